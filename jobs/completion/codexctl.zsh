#compdef codexctl codex-train
# zsh completion for codexctl and codex-train. Load it with
#   source <(codexctl completion zsh)      (after compinit)
# or save it as _codexctl in a folder of $fpath. Verbs, options and config
# keys come from the programs themselves, as in the bash version.

_codexctl_exe() {
    case $1 in
    */codexctl) print -r -- $1 ;;
    */*) print -r -- ${1:h}/codexctl ;;
    *) print -r -- codexctl ;;
    esac
}

_codexctl_options() {
    "$@" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u
}

# section.key=value: the keys (with '='), then an enum's values.
_codexctl_config_word() {
    local ctl=$1 cur=$2
    if [[ $cur == *=* ]]; then
        local key=${cur%%=*}
        local -a values
        values=(${(f)"$($ctl completion values $key 2>/dev/null)"})
        (( ${#values} )) && compadd -- ${values/#/$key=}
        return 0
    fi
    local -a keys
    keys=(${(f)"$($ctl completion keys 2>/dev/null)"})
    compadd -S '=' -- $keys
}

_codexctl_has_config() {
    local i
    for (( i = $1; i < CURRENT; i++ )); do
        [[ $words[i] == *.yaml || $words[i] == *.yml ]] && return 0
    done
    return 1
}

_codexctl_main() {
    local cur=$words[CURRENT] prev=$words[CURRENT-1]
    local ctl=$(_codexctl_exe $words[1])
    if (( CURRENT == 2 )); then
        compadd -- ${(f)"$($ctl completion verbs 2>/dev/null)"} --help --version
        return 0
    fi
    local verb=$words[2]
    if [[ $cur == -* ]]; then
        compadd -- ${(f)"$(_codexctl_options $ctl $verb)"}
        return 0
    fi
    if [[ $verb == completion && CURRENT -eq 3 ]]; then
        compadd -- bash zsh verbs keys values
        return 0
    fi
    if [[ $verb == submit ]] && { [[ $prev == --sweep ]] || _codexctl_has_config 3 }; then
        _codexctl_config_word $ctl $cur
        [[ $prev == --sweep || $cur == *=* ]] && return 0
    fi
    _files
}

_codex_train_main() {
    local cur=$words[CURRENT]
    local ctl=$(_codexctl_exe $words[1])
    if [[ $cur == -* ]]; then
        compadd -- ${(f)"$(_codexctl_options $words[1])"}
        return 0
    fi
    if _codexctl_has_config 2; then
        _codexctl_config_word $ctl $cur
        return 0
    fi
    _files
}

_codexctl() {
    case $service in
    codex-train) _codex_train_main ;;
    *) _codexctl_main ;;
    esac
}

if (( $+functions[compdef] )); then
    compdef _codexctl codexctl codex-train
fi
