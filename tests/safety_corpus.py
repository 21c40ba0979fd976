#!/usr/bin/env python3
"""A labelled corpus for the secret scanner, in the spirit of real repositories.

Every file is built here at run time from templates of the files real projects
hold (.env files, settings modules, Kubernetes manifests, docker and Maven
configs, shell history, SQL migrations, lockfiles, docs, data exports...), each
either leaking a credential or personal data ("leak") or only looking like it
("clean": placeholders, environment look-ups, lockfile hashes, digests, public
keys, encrypted-at-rest formats, published example values). Secrets are drawn
from a seeded generator and assembled from fragments, so this source holds no
token and the corpus is the same on every run.

    safety_corpus.py generate DIR       write DIR/<files> and DIR/labels.tsv
    safety_corpus.py check CODEXCTL     generate into a temporary folder, scan it
                                        with `codexctl scan --format json`, print
                                        recall and false-positive rate, and fail
                                        below the floors at the bottom of this file

labels.tsv: path<TAB>leak|clean<TAB>what the file shows.
"""
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import urllib.parse

R = random.Random(2121)
UP = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LO = "abcdefghijkmnopqrstuvwxyz"
DI = "23456789"
ALNUM = UP + LO + DI
HEX = "0123456789abcdef"


def rnd(n, alphabet=ALNUM):
    return "".join(R.choice(alphabet) for _ in range(n))


def pw():
    """A password people choose: mixed, with a symbol."""
    return rnd(5, UP + LO) + R.choice("!#%*@") + rnd(4, DI) + rnd(3, LO)


def luhn_complete(prefix, length):
    digits = prefix + "".join(R.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for c in "0123456789":
        s = digits + c
        total = 0
        for i, ch in enumerate(reversed(s)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return s
    raise AssertionError


def iban(cc, length):
    bban = "".join(R.choice("0123456789") for _ in range(length - 4))
    n = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
    return f"{cc}{98 - n % 97:02d}{bban}"


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---- fake secrets of each kind (prefixes assembled from pieces) ----
def ghp():
    return "gh" + "p_" + rnd(36)


def aws_id():
    return "AK" + "IA" + rnd(16, UP + "234567")


def aws_secret():
    return rnd(40, UP + LO + DI + "/+")


def stripe_live():
    return "sk_" + "live_" + rnd(24)


def slack_bot():
    return "xo" + "xb-" + rnd(11, DI) + "-" + rnd(12, DI) + "-" + rnd(24)


def openai():
    return "sk-" + rnd(20) + "T3Blbk" + "FJ" + rnd(20)


def npm():
    return "np" + "m_" + rnd(36)


def gcp():
    return "AI" + "za" + rnd(35, ALNUM + "_-")


def sendgrid():
    return "SG." + rnd(22) + "." + rnd(43)


def hf():
    return "h" + "f_" + rnd(34, UP + LO)


def glpat():
    return "glp" + "at-" + rnd(20)


def pem_key():
    body = "\n".join(rnd(64, ALNUM + "+/") for _ in range(8))
    return "-----BEGIN RSA PRIVATE" + " KEY-----\nMIIEow" + body + "\n-----END RSA PRIVATE KEY-----\n"


def card():
    return luhn_complete(R.choice(["4929", "5412", "3782", "6011", "6250", "3530"]), 16)


def phone_uk():
    return f"020 7{rnd(3, DI)} {rnd(4, DI)}"


def email():
    return f"{R.choice(['anna', 'j.smith', 'mkowalski', 'li.wei', 'ops-team'])}@{R.choice(['acme-corp.io', 'mailbox.org', 'globex.de', 'initech.fr'])}"


LEAK, CLEAN = [], []


def leak(fn):
    LEAK.append(fn)
    return fn


def clean(fn):
    CLEAN.append(fn)
    return fn


# ---- files that leak ----
@leak
def env_file():
    return ".env", f"NODE_ENV=production\nPORT=8080\nDATABASE_URL=postgres://app:{pw()}@db.internal:5432/app\nSTRIPE_SECRET_KEY={stripe_live()}\n"


@leak
def aws_config_py():
    return "config/aws.py", f"import boto3\n\nAWS_ACCESS_KEY_ID = \"{aws_id()}\"\nAWS_SECRET_ACCESS_KEY = \"{aws_secret()}\"\n\ns3 = boto3.client('s3', aws_access_key_id=AWS_ACCESS_KEY_ID)\n"


@leak
def django_settings():
    key = "django-insecure-" + rnd(40, LO + DI + "!@#%^&*(-_=+)")
    return "mysite/settings.py", f"from pathlib import Path\n\nBASE_DIR = Path(__file__).resolve().parent.parent\nSECRET_KEY = '{key}'\nDEBUG = False\n"


@leak
def k8s_secret():
    return "deploy/secret.yaml", f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\ntype: Opaque\ndata:\n  GITHUB_TOKEN: {b64(ghp())}\n  DATABASE_URL: {b64('postgres://api:' + pw() + '@pg:5432/api')}\n"


@leak
def docker_config():
    auth = b64("ci-bot:" + pw() + rnd(6))
    return ".docker/config.json", json.dumps({"auths": {"registry.acme-corp.io": {"auth": auth}}}, indent=2) + "\n"


@leak
def deploy_sh():
    return "scripts/deploy.sh", f"#!/bin/sh\nset -e\nmysqldump -u root -p{pw()} shop > /backup/shop.sql\nsshpass -p '{pw()}' scp /backup/shop.sql backup@10.0.3.7:/srv\n"


@leak
def curl_script():
    return "tools/call_api.sh", f"#!/bin/bash\ncurl -s -u admin:{pw()} https://jenkins.acme-corp.io/api/json\ncurl -H \"Authorization: Bearer {rnd(40)}\" https://api.acme-corp.io/v2/items\n"


@leak
def pgpass():
    return ".pgpass", f"db.internal:5432:app:app_owner:{pw()}\n*:5432:*:replicator:{pw()}\n"


@leak
def netrc():
    return ".netrc", f"machine api.heroku.com login ops@acme-corp.io password {rnd(32, HEX)}\nmachine git.heroku.com login ops@acme-corp.io password {pw()}\n"


@leak
def maven_settings():
    return ".m2/settings.xml", f"<settings>\n  <servers>\n    <server>\n      <id>nexus-releases</id>\n      <username>deployer</username>\n      <password>{pw()}</password>\n    </server>\n  </servers>\n</settings>\n"


@leak
def sql_migration():
    return "db/migrations/0003_roles.sql", f"-- reporting role\nCREATE ROLE reporting WITH LOGIN PASSWORD '{pw()}';\nGRANT SELECT ON ALL TABLES IN SCHEMA public TO reporting;\n"


@leak
def spring_properties():
    return "src/main/resources/application.properties", f"spring.datasource.url=jdbc:mysql://db:3306/shop?user=shop&password={pw()}\nspring.jpa.hibernate.ddl-auto=validate\n"


@leak
def appsettings():
    cs = f"Server=tcp:sql.acme-corp.io,1433;Database=Orders;User Id=orders;Password={pw()};"
    return "appsettings.Production.json", json.dumps({"ConnectionStrings": {"Orders": cs}, "Logging": {"LogLevel": {"Default": "Warning"}}}, indent=2) + "\n"


@leak
def kubeconfig():
    return ".kube/config", f"apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    client-certificate-data: {rnd(120, ALNUM + '+/')}\n    client-key-data: {rnd(160, ALNUM + '+/')}\n"


@leak
def jwk():
    return "keys/signing.jwk.json", json.dumps({"kty": "EC", "crv": "P-256", "x": rnd(43, ALNUM + "_-"), "y": rnd(43, ALNUM + "_-"), "d": rnd(43, ALNUM + "_-")}) + "\n"


@leak
def putty():
    lines = "\n".join(rnd(64, ALNUM + "+/") for _ in range(2))
    return "keys/deploy.ppk", f"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\n{rnd(64, ALNUM + '+/')}\n{rnd(20, ALNUM)}\nPrivate-Lines: 2\n{lines}\nPrivate-MAC: {rnd(64, HEX)}\n"


@leak
def pem_file():
    return "certs/server.key", pem_key()


@leak
def js_concat():
    s = stripe_live()
    return "web/src/payments.js", f"const stripe = require('stripe')(\n  '{s[:8]}' + '{s[8:]}'\n);\nmodule.exports = stripe;\n"


@leak
def py_adjacent():
    t = ghp()
    return "bot/github.py", f"TOKEN = (\n    \"{t[:14]}\"\n    \"{t[14:]}\"\n)\nheaders = {{'Authorization': f'token {{TOKEN}}'}}\n"


@leak
def js_atob():
    return "web/src/config.js", f"export const slackToken = atob(\"{b64(slack_bot())}\");\n"


@leak
def go_decode():
    return "cmd/worker/main.go", f"package main\n\nimport \"encoding/base64\"\n\nfunc token() string {{\n\tb, _ := base64.StdEncoding.DecodeString(\"{b64(npm())}\")\n\treturn string(b)\n}}\n"


@leak
def workflow():
    hook = "https://hooks.slack.com/services/T" + rnd(8, UP + DI) + "/B" + rnd(8, UP + DI) + "/" + rnd(24)
    return ".github/workflows/notify.yml", f"name: notify\non: [push]\njobs:\n  ping:\n    runs-on: ubuntu-latest\n    steps:\n      - run: curl -X POST -d '{{\"text\":\"built\"}}' {hook}\n"


@leak
def tfvars():
    key = rnd(86, ALNUM + "+/") + "=="
    return "infra/prod.tfvars", f"region = \"westeurope\"\nstorage_connection = \"DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={key};EndpointSuffix=core.windows.net\"\n"


@leak
def contacts_csv():
    rows = "\n".join(f"{n},{email()},{phone_uk()}" for n in ["Anna Kurz", "Li Wei", "Marc Roux"])
    return "exports/contacts.csv", "name,email,phone\n" + rows + "\n"


@leak
def customers_json():
    return "fixtures/customers.json", json.dumps([{"name": "J. Doe", "card": card(), "exp": "04/29"}]) + "\n"


@leak
def payroll_csv():
    return "hr/payroll.csv", f"employee,ssn,iban\n1001,{R.randint(100, 665)}-{R.randint(10, 99)}-{R.randint(1000, 9999)},{iban('DE', 22)}\n"


@leak
def url_encoded_log():
    v = urllib.parse.quote(f"mongodb://svc:{pw()}@mongo-0.acme-corp.io:27017/app", safe="")
    return "logs/access.log", f"10.0.0.4 - - [12/Mar/2024:10:11:12 +0000] \"GET /health?next={v} HTTP/1.1\" 200 12\n"


@leak
def rails_secrets():
    return "config/secrets.yml", f"production:\n  secret_key_base: {rnd(128, HEX)}\n"


@leak
def laravel_env():
    return "laravel/.env", f"APP_NAME=Shop\nAPP_ENV=production\nAPP_KEY=base64:{b64(rnd(32))}\nAPP_DEBUG=false\n"


@leak
def wp_config():
    salt = rnd(64, ALNUM + "!@#%^&*()-_[]{}<>~+=,.;:/?|")
    return "wp-config.php", f"<?php\ndefine('DB_NAME', 'wp');\ndefine('AUTH_KEY',         '{salt}');\n"


@leak
def npmrc():
    return ".npmrc", f"//registry.npmjs.org/:_authToken={npm()}\n"


@leak
def pypirc():
    return ".pypirc", f"[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc{rnd(60, ALNUM + '_-')}\n"


@leak
def git_remote():
    return "repo/.git-config", f"[remote \"origin\"]\n\turl = https://deploy:{glpat()}@gitlab.acme-corp.io/shop/api.git\n"


@leak
def compose():
    return "docker-compose.yml", f"services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: {rnd(10, LO + UP)}{rnd(6, DI)}\n"


@leak
def notebook():
    src = [f"import openai\n", f"openai.api_key = \"{openai()}\"\n"]
    return "notebooks/explore.ipynb", json.dumps({"cells": [{"cell_type": "code", "source": src}], "nbformat": 4}, indent=1) + "\n"


@leak
def bash_history():
    return "home/.bash_history", f"ls -la\naws configure set aws_secret_access_key {aws_secret()}\naws s3 ls\n"


@leak
def php_concat():
    t = sendgrid()
    return "app/Mail.php", f"<?php\n$key = '{t[:10]}' .\n       '{t[10:]}';\n$sg = new \\SendGrid($key);\n"


@leak
def hf_yaml():
    return "ml/config.yaml", f"model: meta-llama/Llama-3-8B\nhub:\n  token: {hf()}\n"


@leak
def gcp_js():
    return "web/src/maps-admin.js", f"const ADMIN_KEY = \"{gcp()}\";\n"


@leak
def basic_auth_header():
    return "tests/http/requests.http", f"GET https://api.acme-corp.io/admin\nAuthorization: Basic {b64('admin:' + pw())}\n"


# ---- files that only look like it ----
@clean
def env_example():
    return ".env.example", "DATABASE_URL=postgres://app:changeme@localhost:5432/app\nSTRIPE_SECRET_KEY=sk_" + "live_xxxxxxxxxxxxxxxxxxxxxxxx\nAPI_KEY=<your-api-key>\nSECRET_TOKEN=${SECRET_TOKEN}\n"


@clean
def settings_env():
    return "app/settings.py", "import os\n\nSECRET_KEY = os.environ['SECRET_KEY']\nDB_PASS = \"$DB_PASSWORD_2024\"\nDB_PASSWORD = os.getenv('DB_PASSWORD')\nAPI_TOKEN = settings.get('api_token')\n"


@clean
def sealed_secret():
    data = rnd(R.randint(300, 600), ALNUM + "+/") + "=="
    return "deploy/sealed.yaml", f"apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\nspec:\n  encryptedData:\n    password: {data}\n"


@clean
def sops_file():
    return "secrets/prod.enc.yaml", f"db:\n  password: ENC[AES256_GCM,data:{rnd(24, ALNUM + '+/')}=,iv:{rnd(43, ALNUM + '+/')}=,tag:{rnd(22, ALNUM + '+/')}==,type:str]\nsops:\n  version: 3.8.1\n"


@clean
def ansible_vault():
    lines = "\n".join(rnd(80, HEX) for _ in range(5))
    return "group_vars/all/vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n" + lines + "\n"


@clean
def package_lock():
    deps = {f"node_modules/{n}": {"version": "1.2.3", "resolved": f"https://registry.npmjs.org/{n}/-/{n}-1.2.3.tgz", "integrity": "sha512-" + rnd(86, ALNUM + "+/") + "=="} for n in ["lodash", "express", "debug"]}
    return "package-lock.json", json.dumps({"name": "web", "lockfileVersion": 3, "packages": deps}, indent=2) + "\n"


@clean
def go_sum():
    return "go.sum", "".join(f"github.com/pkg/{n} v0.9.1 h1:{rnd(43, ALNUM + '+/')}=\n" for n in ["errors", "sftp", "term"])


@clean
def requirements_hashes():
    return "requirements.txt", "".join(f"{n}==2.31.0 --hash=sha256:{rnd(64, HEX)}\n" for n in ["requests", "urllib3", "idna"])


@clean
def dockerfile_digest():
    return "Dockerfile", f"FROM python:3.12-slim@sha256:{rnd(64, HEX)}\nRUN pip install --no-cache-dir -r requirements.txt\nENV PASSWORD_FILE=/run/secrets/db_password\n"


@clean
def ssh_pub():
    return "keys/deploy.pub", f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rnd(43, ALNUM + '+/')} deploy@ci\n"


@clean
def pem_public():
    body = "\n".join(rnd(64, ALNUM + "+/") for _ in range(6))
    return "certs/ca.pem", "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\n" + body[:200] + "\n-----END PUBLIC KEY-----\n"


@clean
def docs_examples():
    return "docs/aws.md", ("Configure the CLI:\n\n```\naws_access_key_id = AKIA" "IOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY" "EXAMPLEKEY\n```\n")


@clean
def docs_jwt():
    return "docs/auth.md", ("Send the token:\n\n    Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9l" "IiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\n")


@clean
def test_cards():
    return "tests/test_checkout.py", "CARDS = ['4242 4242 4242 4242', '5555555555554444', '378282246310005', '6011111111111117']\n\ndef test_pay(client):\n    assert client.pay(CARDS[0]).ok\n"


@clean
def fictional_contacts():
    return "docs/support.md", "Call us on (415) 555-0123 or +44 20 7946 0018, or write to support@example.com.\nIn Australia: (02) 5550 1234.\n"


@clean
def iban_docs():
    return "docs/payments.md", "Enter an IBAN such as GB82 WEST 1234 5698 7654 32 or DE89 3704 0044 0532 0130 00.\n"


@clean
def getpass_code():
    return "cli/login.py", "import getpass\n\npassword = getpass.getpass('Password: ')\ntoken = request.headers.get('Authorization')\napi_key = config['api_key']\n"


@clean
def c_strings():
    return "src/version.h", "#define VERSION \"1.4.2\"\n#define BANNER \"codex \" VERSION \" (\" __DATE__ \")\"\nstatic const char *usage =\n    \"usage: tool [options]\\n\"\n    \"  -p PORT   listen port\\n\";\n"


@clean
def js_strings():
    return "web/src/greet.js", "const msg = 'Hello, ' + user.name + '! Your token expires in ' + days + ' days.';\nconst url = base + '/api/' + 'v2' + '/items';\n"


@clean
def printf_c():
    return "src/table.c", "printf(\"%3d%3d%3d\\n\", a, b, c);\nsnprintf(buf, sizeof buf, \"%2d:%02d\", h, m);\n"


@clean
def changelog():
    return "CHANGELOG.md", "## 2.3.1 (2024-03-12)\n- see https://web.archive.org/web/20150101123456/http://example.org/spec\n- Clause 252.227-7013 (c) (1) applies\n- points=\"1040,277.764 1035,267.764\"\n"


@clean
def numeric_csv():
    rows = "\n".join(f"{R.randint(10**15, 10**16 - 1) // 10 * 10 + 0},{R.random():.6f},{R.random():.6f}" for _ in range(20))
    return "data/measurements.csv", "id,x,y\n" + rows.replace("\n4", "\n9").replace("\n5", "\n9").replace("\n3", "\n9").replace("\n6", "\n9") + "\n"


@clean
def prompt_scripts():
    return "scripts/db.sh", "#!/bin/sh\nmysql -u root -p \"$DB\" < schema.sql\ncurl -u \"$CI_USER:$CI_TOKEN\" https://ci.acme-corp.io/api\nsshpass -p \"$SSHPASS\" ssh backup@host\n"


@clean
def configmap():
    return "deploy/configmap.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: {b64('search,beta-ui')}\n"


@clean
def terraform_vars():
    return "infra/main.tf", "resource \"aws_db_instance\" \"main\" {\n  username = \"app\"\n  password = var.db_password\n}\n"


@clean
def netrc_docs():
    return "docs/netrc.md", "Put this in ~/.netrc:\n\n    machine api.example.com login you@example.com password <your-token>\n"


@clean
def public_jwk():
    return "keys/jwks.json", json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": rnd(342, ALNUM + "_-"), "kid": rnd(8)}]}) + "\n"


@clean
def openapi():
    return "api/openapi.yaml", "components:\n  securitySchemes:\n    bearer:\n      type: http\n      scheme: bearer\n      description: 'Authorization: Bearer <token>'\n"


@clean
def known_hosts():
    return "ssh/known_hosts", "".join(f"{h} ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{rnd(300, ALNUM + '+/')}\n" for h in ["github.com", "gitlab.com"])


@clean
def font_css():
    return "web/fonts.css", f"@font-face {{ font-family: Inter; src: url(data:font/woff2;base64,{rnd(400, ALNUM + '+/')}) format('woff2'); }}\n"


@clean
def html_tel():
    return "web/contact.html", "<a href=\"tel:+15555550142\">Call</a> <a href=\"mailto:info@example.org\">Mail</a>\n"


@clean
def git_shas():
    return "docs/releases.md", "".join(f"- {rnd(40, HEX)} fix build on {d}\n" for d in ["arm64", "riscv", "s390x"])


@clean
def uuid_yaml():
    return "config/ids.yaml", "".join(f"{n}_id: {rnd(8, HEX)}-{rnd(4, HEX)}-{rnd(4, HEX)}-{rnd(4, HEX)}-{rnd(12, HEX)}\n" for n in ["tenant", "project", "workspace"])


@clean
def test_fixture_placeholder():
    return "tests/fixtures/config.json", json.dumps({"api_key": "YOUR_API_KEY", "password": "password", "token": "xxxxxxxxxxxxxxxx", "secret": "changeme"}) + "\n"


@clean
def math_code():
    return "src/poly.py", "c = 14633730048000000*t**14 + 4828147466240000*t**12\nv = np.arange(6)+98172489\nq = Decimal('+35236450.6')\n"


@clean
def env_lookups_js():
    return "server/config.js", "module.exports = {\n  stripeKey: process.env.STRIPE_SECRET_KEY,\n  dbPassword: process.env.DB_PASSWORD || '',\n};\n"


def generate(root):
    """Writes every template several times (fresh values each time); returns the labels."""
    labels = []
    for kind, templates in (("leak", LEAK), ("clean", CLEAN)):
        for rep in range(5):
            for t in templates:
                name, text = t()
                path = os.path.join(kind, f"{t.__name__}_{rep}", name)
                full = os.path.join(root, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as f:
                    f.write(text)
                labels.append((path, kind, t.__name__))
    with open(os.path.join(root, "labels.tsv"), "w") as f:
        for p, k, w in labels:
            f.write(f"{p}\t{k}\t{w}\n")
    return labels


# The floors `check` enforces (measured: see docs/safety.md).
MIN_RECALL = 0.97
MAX_FALSE_POSITIVE_RATE = 0.03


def check(codexctl):
    with tempfile.TemporaryDirectory(prefix="cu_corpus_") as root:
        labels = generate(root)
        out = subprocess.run([codexctl, "scan", "--format", "json", root], capture_output=True, text=True)
        if out.returncode not in (0, 1):
            print(out.stderr)
            return 1
        hits = {}
        for f in json.loads(out.stdout)["findings"]:
            rel = os.path.relpath(f["path"], root)
            hits.setdefault(rel, []).append(f["rule"])
        leaks = [p for p, k, _ in labels if k == "leak"]
        cleans = [p for p, k, _ in labels if k == "clean"]
        found = [p for p in leaks if p in hits]
        flagged = [p for p in cleans if p in hits]
        recall = len(found) / len(leaks)
        fpr = len(flagged) / len(cleans)
        print(f"corpus: {len(labels)} files ({len(leaks)} leak, {len(cleans)} clean)")
        print(f"recall {recall:.3f}  false-positive rate {fpr:.3f}")
        for p in sorted(set(leaks) - set(found)):
            print("  missed:", p)
        for p in flagged:
            print("  flagged:", p, hits[p])
        ok = recall >= MIN_RECALL and fpr <= MAX_FALSE_POSITIVE_RATE and len(labels) >= 300
        print("ok" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        generate(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    print(__doc__)
    sys.exit(2)
