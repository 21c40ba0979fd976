# bash completion for codexctl and codex-train. Load it with
#   source <(codexctl completion bash)
# or install it: codexctl completion bash > /etc/bash_completion.d/codexctl
# Verbs, options and config keys come from the programs themselves
# (`codexctl completion verbs|keys|values KEY`, `codexctl VERB --help`), so
# the lists never fall behind the code.

# The codexctl beside the program being completed (a path works), else PATH's.
_codexctl_exe() {
    local exe=$1
    case $exe in
    */codexctl) printf '%s\n' "$exe" ;;
    */*) printf '%s/codexctl\n' "${exe%/*}" ;;
    *) printf 'codexctl\n' ;;
    esac
}

# Options a --help text lists.
_codexctl_options() {
    "$@" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u
}

# Completes a section.key=value word: keys with '=', then an enum's values.
_codexctl_config_word() {
    local ctl=$1 cur=$2
    if [[ $cur == *=* ]]; then
        local key=${cur%%=*}
        local values
        values=$("$ctl" completion values "$key" 2>/dev/null) || return 0
        local v
        COMPREPLY=()
        for v in $values; do
            [[ $key=$v == "$cur"* ]] && COMPREPLY+=("$key=$v")
        done
        return 0
    fi
    COMPREPLY=($(compgen -W "$("$ctl" completion keys 2>/dev/null | sed 's/$/=/')" -- "$cur"))
    compopt -o nospace 2>/dev/null
}

# Whether a YAML config was given before the word being completed.
_codexctl_has_config() {
    local i
    for ((i = $1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == *.yaml || ${COMP_WORDS[i]} == *.yml ]] && return 0
    done
    return 1
}

_codexctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local ctl
    ctl=$(_codexctl_exe "${COMP_WORDS[0]}")
    COMPREPLY=()
    if ((COMP_CWORD == 1)); then
        COMPREPLY=($(compgen -W "$("$ctl" completion verbs 2>/dev/null) --help --version" -- "$cur"))
        return 0
    fi
    local verb=${COMP_WORDS[1]}
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_codexctl_options "$ctl" "$verb")" -- "$cur"))
        return 0
    fi
    if [[ $verb == completion && COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "bash zsh verbs keys values" -- "$cur"))
        return 0
    fi
    if [[ $verb == submit ]] && { [[ $prev == --sweep ]] || _codexctl_has_config 2; }; then
        _codexctl_config_word "$ctl" "$cur"
        [[ $prev == --sweep || $cur == *=* ]] && return 0
        COMPREPLY+=($(compgen -f -- "$cur"))
        return 0
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}

_codex_train() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local ctl
    ctl=$(_codexctl_exe "${COMP_WORDS[0]}")
    COMPREPLY=()
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_codexctl_options "${COMP_WORDS[0]}")" -- "$cur"))
        return 0
    fi
    if _codexctl_has_config 1; then
        _codexctl_config_word "$ctl" "$cur"
        return 0
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}

complete -F _codexctl codexctl
complete -F _codex_train codex-train
