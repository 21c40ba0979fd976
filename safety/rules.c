/*
 * The rule table (see rules.h for the conventions every row follows) and
 * the small judges rules use: Shannon entropy, Luhn, IBAN mod-97.
 *
 * Sample secrets are fake but pattern-valid. They are assembled from the
 * fragments below by literal concatenation, so no source line holds a whole
 * token that a push-protection scanner would flag.
 */
#include "safety/rules.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* Fake fragments of known length. */
#define A10 "Fak3Xq7Lm2"
#define B10 "Pz9KwT4nB8"
#define C10 "Rc5Hy6Jd1V"
#define D10 "Ge0Ns8Ut3W"
#define A40 A10 B10 C10 D10
#define a10 "fak3xq7lm2"
#define b10 "pz9kwt4nb8"
#define c10 "rc5hy6jd1v"
#define d10 "ge0ns8ut3w"
#define H16 "0123456789abcdef"
#define H32 H16 "fedcba9876543210"
#define H40 H32 "0a1b2c3d"
#define UUID                                                                                       \
    "01234567-89ab-cdef-0123-"                                                                     \
    "456789abcdef"

#define KW(...)                                                                                    \
    { __VA_ARGS__, NULL }
#define S(...)                                                                                     \
    { __VA_ARGS__, NULL }
#define SEC SAFETY_CAT_SECRET
#define PII SAFETY_CAT_PII
#define LOW SAFETY_SEV_LOW
#define MED SAFETY_SEV_MEDIUM
#define HIGH SAFETY_SEV_HIGH
#define CRIT SAFETY_SEV_CRITICAL
#define TKW SAFETY_TRIGGER_KEYWORDS
#define TDIG SAFETY_TRIGGER_DIGITS
#define VNONE SAFETY_VALID_NONE

/* Assignment tail: an optional closing quote, an operator, an optional opening quote. */
#define ASSIGN "[\"']?[ \\t]*(?::=|=>|:|=)[ \\t]*[\"']?"
/* A prefixed token: not preceded by a word character, not followed by one. */
#define TOKEN(prefix, body) "(?<![A-Za-z0-9_])(" prefix body ")(?![A-Za-z0-9])"
#define TOKEN_DASH(prefix, body) "(?<![A-Za-z0-9_-])(" prefix body ")(?![A-Za-z0-9_-])"
/* A database URL with a password for the given scheme alternation. */
#define DB_URL(schemes)                                                                            \
    "(?i)(?<![A-Za-z0-9+.-])(?:" schemes                                                           \
    ")://[^:@/ \\t\\n\"']{0,64}:([^@/ \\t\\n\"']{3,128})@[^ \\t\\n\"'/]{1,255}"

static const safety_rule_t RULES[] = {
    /* ---- cloud providers ---- */
    {"aws_access_key", "AWS access key ID", SEC, CRIT, TKW, KW("akia", "asia", "abia", "acca"),
     "(?<![A-Za-z0-9])((?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("aws_key = \"AKIA"
       "Q3EGRT7PLXW5M2ND\""),
     S("AKIA"
       "XXXXXXXXXXXXXXXX",
       "AKIA"
       "IOSFODNN7EXAMPL",
       "aws_access_key_id = AKIA"
       "IOSFODNN7EXAMPLE")},
    {"aws_secret_key", "AWS secret access key", SEC, CRIT, TKW, KW("aws"),
     "(?i)aws_?(?:secret_?(?:access_?)?key|secret)" ASSIGN "([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
     3.5, VNONE, 0, 0,
     S("aws_secret_access_key = Kq7Lm2Pz9KwT4nB8/"
       "Rc5Hy6Jd1VGe0Ns8Ut3WFak"),
     S("aws_secret_access_key = os.environ['AWS_SECRET']",
       "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/"
       "bPxRfiCYEXAMPLEKEY")},
    {"gcp_api_key", "Google Cloud / Firebase / Gemini API key", SEC, HIGH, TKW, KW("aiza"),
     TOKEN_DASH("AIza", "[0-9A-Za-z_-]{35}"), 3.0, VNONE, 0, 0,
     S("key=AIza"
       "SyFAK" A10 B10 C10),
     S("AIza"
       "short")},
    {"gcp_service_account_key", "Google service account private key id", SEC, HIGH, TKW,
     KW("private_key_id"), "\"private_key_id\"[ \\t]*:[ \\t]*\"([0-9a-f]{40})\"", 3.0, VNONE, 0, 0,
     S("\"private_key_id\": \"" H40 "\""), S("\"private_key_id\": \"\"")},
    {"gcp_oauth_token", "Google OAuth access token", SEC, HIGH, TKW, KW("ya29."),
     TOKEN_DASH("ya29\\.", "[0-9A-Za-z_-]{30,400}"), 3.0, VNONE, 0, 0,
     S("Bearer ya29." A10 B10 C10 "_x"), S("ya29.short")},
    {"azure_storage_key", "Azure storage account key", SEC, CRIT, TKW, KW("accountkey="),
     "(?i)AccountKey=([A-Za-z0-9+/]{86}==)", 4.0, VNONE, 0, 0,
     S("DefaultEndpointsProtocol=https;AccountName=fake;AccountKey=" A40 A40 "Ab1Cd2=="),
     S("AccountKey=<your-key>")},
    {"azure_sas_token", "Azure shared access signature", SEC, HIGH, TKW, KW("sig="),
     "(?<![A-Za-z0-9])sv=[0-9]{4}-[0-9]{2}-[0-9]{2}&[^ \\t\\n\"'<>]{0,300}?[?&]sig=([A-Za-z0-9%+/"
     "=]{30,120})",
     3.5, VNONE, 0, 0,
     S("https://x.blob.core.windows.net/c?sv=2022-11-02&ss=b&sp=r&sig=" A10 B10 C10 "%3D"),
     S("?sv=2022-11-02&sig=")},
    {"azure_ad_client_secret", "Azure AD (Entra ID) client secret", SEC, CRIT, TKW, KW("q~"),
     "(?<![A-Za-z0-9_~.-])([A-Za-z0-9_.-]{3}[0-9]Q~[A-Za-z0-9_.~-]{31,34})(?![A-Za-z0-9_.~-])", 3.0,
     VNONE, 0, 0, S("secret: abc8Q~" A10 B10 C10 "x_Y"), S("abc8Q~short")},
    {"digitalocean_pat", "DigitalOcean personal access token", SEC, CRIT, TKW, KW("dop_v1_"),
     TOKEN("dop_v1_", "[a-f0-9]{64}"), 3.0, VNONE, 0, 0, S("dop_v1_" H32 H32), S("dop_v1_" H16)},
    {"digitalocean_oauth", "DigitalOcean OAuth token", SEC, CRIT, TKW, KW("doo_v1_"),
     TOKEN("doo_v1_", "[a-f0-9]{64}"), 3.0, VNONE, 0, 0, S("doo_v1_" H32 H32), S("doo_v1_" H16)},
    {"alibaba_access_key", "Alibaba Cloud AccessKey ID", SEC, HIGH, TKW, KW("ltai"),
     TOKEN("LTAI", "[A-Za-z0-9]{20}"), 3.0, VNONE, 0, 0, S("LTAI" A10 B10),
     S("LTAI"
       "short")},
    {"heroku_api_key", "Heroku API key", SEC, HIGH, TKW, KW("heroku"),
     "(?i)heroku[A-Za-z0-9_ .-]{0,20}" ASSIGN
     "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
     3.0, VNONE, 0, 0, S("HEROKU_API_KEY=" UUID), S("heroku_app = \"my-app\"")},
    {"cloudflare_api_token", "Cloudflare API token", SEC, HIGH, TKW,
     KW("cloudflare", "cf_api", "cfapi"),
     "(?i)(?:cloudflare|cf)_?api_?(?:token|key)" ASSIGN "([A-Za-z0-9_-]{40})(?![A-Za-z0-9_-])", 3.5,
     VNONE, 0, 0, S("CLOUDFLARE_API_TOKEN=" A40), S("CLOUDFLARE_API_TOKEN=${TOKEN}")},
    /* ---- code hosts ---- */
    {"github_pat", "GitHub personal access token (classic)", SEC, CRIT, TKW, KW("ghp_"),
     TOKEN("ghp_", "[A-Za-z0-9]{36}"), 3.0, VNONE, 0, 0, S("token: ghp_" A10 B10 C10 "FAKE01"),
     S("ghp_"
       "tooShort123")},
    {"github_oauth", "GitHub OAuth access token", SEC, CRIT, TKW, KW("gho_"),
     TOKEN("gho_", "[A-Za-z0-9]{36}"), 3.0, VNONE, 0, 0, S("gho_" A10 B10 C10 "FAKE01"),
     S("gho_"
       "tooShort123")},
    {"github_user_to_server", "GitHub user-to-server token", SEC, CRIT, TKW, KW("ghu_"),
     TOKEN("ghu_", "[A-Za-z0-9]{36}"), 3.0, VNONE, 0, 0, S("ghu_" A10 B10 C10 "FAKE01"),
     S("ghu_"
       "tooShort123")},
    {"github_server_to_server", "GitHub server-to-server (app installation) token", SEC, CRIT, TKW,
     KW("ghs_"), TOKEN("ghs_", "[A-Za-z0-9]{36}"), 3.0, VNONE, 0, 0, S("ghs_" A10 B10 C10 "FAKE01"),
     S("ghs_"
       "tooShort123")},
    {"github_refresh_token", "GitHub refresh token", SEC, CRIT, TKW, KW("ghr_"),
     TOKEN("ghr_", "[A-Za-z0-9]{36}"), 3.0, VNONE, 0, 0, S("ghr_" A10 B10 C10 "FAKE01"),
     S("ghr_"
       "tooShort123")},
    {"github_fine_grained_pat", "GitHub fine-grained personal access token", SEC, CRIT, TKW,
     KW("github_pat_"), TOKEN("github_pat_", "[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"), 3.0, VNONE, 0, 0,
     S("github_pat_" A10 B10 "Xy"
       "_" A40 "Qr5St6Uv7Wx8Yz9Ab0C"),
     S("github_pat_"
       "short_one")},
    {"gitlab_pat", "GitLab personal access token", SEC, CRIT, TKW, KW("glpat-"),
     TOKEN_DASH("glpat-", "[A-Za-z0-9_-]{20}"), 3.0, VNONE, 0, 0, S("glpat-" A10 B10),
     S("glpat-"
       "xxxxxxxxxxxxxxxxxxxx")},
    {"gitlab_pipeline_trigger", "GitLab pipeline trigger token", SEC, HIGH, TKW, KW("glptt-"),
     TOKEN("glptt-", "[0-9a-f]{40}"), 3.0, VNONE, 0, 0, S("glptt-" H40), S("glptt-" H16)},
    {"gitlab_runner_token", "GitLab runner registration token", SEC, HIGH, TKW, KW("gr1348941"),
     TOKEN_DASH("GR1348941", "[A-Za-z0-9_-]{20}"), 3.0, VNONE, 0, 0, S("GR1348941" A10 B10),
     S("GR1348941"
       "short")},
    {"gitlab_deploy_token", "GitLab deploy token", SEC, HIGH, TKW, KW("gldt-"),
     TOKEN_DASH("gldt-", "[A-Za-z0-9_-]{20}"), 3.0, VNONE, 0, 0, S("gldt-" A10 B10),
     S("gldt-"
       "short")},
    {"bitbucket_app_password", "Bitbucket / Atlassian app password", SEC, HIGH, TKW, KW("atbb"),
     "(?<![A-Za-z0-9])(ATBB[A-Za-z0-9_=.-]{32})(?![A-Za-z0-9_=.-])", 3.0, VNONE, 0, 0,
     S("ATBB" A10 B10 C10 "x9"),
     S("ATBB"
       "short")},
    /* ---- CI systems ---- */
    {"circleci_token", "CircleCI API token", SEC, HIGH, TKW, KW("circle"),
     "(?i)circle[A-Za-z0-9_ .-]{0,20}token" ASSIGN "([0-9a-f]{40})(?![0-9a-f])", 3.0, VNONE, 0, 0,
     S("CIRCLECI_TOKEN=" H40), S("circleci_token: null")},
    {"travis_ci_token", "Travis CI API token", SEC, HIGH, TKW, KW("travis"),
     "(?i)travis[A-Za-z0-9_ .-]{0,20}token" ASSIGN "([A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])", 3.0,
     VNONE, 0, 0, S("TRAVIS_TOKEN=" A10 B10 "Xy"), S("travis_token: ${{ secrets.T }}")},
    {"jenkins_api_token", "Jenkins API token", SEC, HIGH, TKW, KW("jenkins"),
     "(?i)jenkins[A-Za-z0-9_ .-]{0,20}(?:token|api_?key)" ASSIGN "([0-9a-f]{32,34})(?![0-9a-f])",
     3.0, VNONE, 0, 0, S("JENKINS_API_TOKEN=11" H32), S("jenkins_token = \"\"")},
    {"buildkite_token", "Buildkite agent/API token", SEC, HIGH, TKW, KW("bkua_"),
     TOKEN("bkua_", "[a-f0-9]{40}"), 3.0, VNONE, 0, 0, S("bkua_" H40), S("bkua_" H16)},
    {"codecov_token", "Codecov upload token", SEC, MED, TKW, KW("codecov"),
     "(?i)codecov[A-Za-z0-9_ .-]{0,20}token" ASSIGN
     "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
     3.0, VNONE, 0, 0, S("CODECOV_TOKEN=" UUID), S("codecov_token: ${{ secrets.CODECOV }}")},
    {"azure_devops_pat", "Azure DevOps personal access token", SEC, CRIT, TKW,
     KW("azure_devops", "azuredevops", "ado_pat", "adopat", "ado_token", "adotoken"),
     "(?i)(?:azure_?devops|ado)_?(?:pat|token)" ASSIGN "([a-z0-9]{52})(?![a-z0-9])", 3.0, VNONE, 0,
     0, S("AZURE_DEVOPS_PAT=" a10 b10 c10 d10 "ab12cd34ef56"), S("ado_pat: $(System.AccessToken)")},
    /* ---- payment ---- */
    {"stripe_secret_key", "Stripe live secret key", SEC, CRIT, TKW, KW("sk_live_"),
     TOKEN("sk_live_", "[0-9A-Za-z]{24,99}"), 3.0, VNONE, 0, 0, S("sk_live_" A10 B10 "Xy3Z"),
     S("sk_live_"
       "short")},
    {"stripe_restricted_key", "Stripe live restricted key", SEC, CRIT, TKW, KW("rk_live_"),
     TOKEN("rk_live_", "[0-9A-Za-z]{24,99}"), 3.0, VNONE, 0, 0, S("rk_live_" A10 B10 "Xy3Z"),
     S("rk_live_"
       "short")},
    {"stripe_test_key", "Stripe test-mode secret key", SEC, LOW, TKW, KW("sk_test_"),
     TOKEN("sk_test_", "[0-9A-Za-z]{24,99}"), 3.0, VNONE, 0, 0, S("sk_test_" A10 B10 "Xy3Z"),
     S("sk_test_"
       "short")},
    {"stripe_webhook_secret", "Stripe webhook signing secret", SEC, HIGH, TKW, KW("whsec_"),
     TOKEN("whsec_", "[A-Za-z0-9]{32,64}"), 3.0, VNONE, 0, 0, S("whsec_" A10 B10 C10 "Xy"),
     S("whsec_"
       "short")},
    {"square_access_token", "Square access token", SEC, CRIT, TKW, KW("sq0atp-"),
     TOKEN_DASH("sq0atp-", "[0-9A-Za-z_-]{22}"), 3.0, VNONE, 0, 0, S("sq0atp-" A10 B10 "Xy"),
     S("sq0atp-"
       "short")},
    {"square_oauth_secret", "Square OAuth secret", SEC, CRIT, TKW, KW("sq0csp-"),
     TOKEN_DASH("sq0csp-", "[0-9A-Za-z_-]{43}"), 3.0, VNONE, 0, 0, S("sq0csp-" A40 "Xy3"),
     S("sq0csp-"
       "short")},
    {"braintree_access_token", "PayPal Braintree access token", SEC, CRIT, TKW,
     KW("access_token$production$"),
     "(access_token\\$production\\$[0-9a-z]{16}\\$[0-9a-f]{32})(?![0-9a-f])", 3.0, VNONE, 0, 0,
     S("access_token$production$"
       "fak3xq7lm2pz9kwt"
       "$" H32),
     S("access_token$production$"
       "short")},
    {"shopify_access_token", "Shopify access token", SEC, CRIT, TKW, KW("shpat_"),
     TOKEN("shpat_", "[a-fA-F0-9]{32}"), 3.0, VNONE, 0, 0, S("shpat_" H32), S("shpat_" H16)},
    {"shopify_shared_secret", "Shopify shared secret", SEC, CRIT, TKW, KW("shpss_"),
     TOKEN("shpss_", "[a-fA-F0-9]{32}"), 3.0, VNONE, 0, 0, S("shpss_" H32), S("shpss_" H16)},
    {"shopify_custom_app_token", "Shopify custom app access token", SEC, CRIT, TKW, KW("shpca_"),
     TOKEN("shpca_", "[a-fA-F0-9]{32}"), 3.0, VNONE, 0, 0, S("shpca_" H32), S("shpca_" H16)},
    {"shopify_private_app_token", "Shopify private app password", SEC, CRIT, TKW, KW("shppa_"),
     TOKEN("shppa_", "[a-fA-F0-9]{32}"), 3.0, VNONE, 0, 0, S("shppa_" H32), S("shppa_" H16)},
    /* ---- chat and messaging ---- */
    {"slack_bot_token", "Slack bot token", SEC, HIGH, TKW, KW("xoxb-"),
     "(xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("xoxb-"
       "1234567890-1234567890-" A10 B10 "Xy3Z"),
     S("xoxb-"
       "123-456-abc")},
    {"slack_user_token", "Slack user token", SEC, HIGH, TKW, KW("xoxp-", "xoxe-"),
     "(xox[pe]-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32})(?![a-f0-9])", 3.0, VNONE, 0, 0,
     S("xoxp-"
       "1234567890-1234567890-1234567890-" H32),
     S("xoxp-"
       "123-456-789-abc")},
    {"slack_app_token", "Slack app-level token", SEC, HIGH, TKW, KW("xapp-"),
     "(xapp-[0-9]-[A-Z0-9]{9,11}-[0-9]{10,13}-[a-f0-9]{64})(?![a-f0-9])", 3.0, VNONE, 0, 0,
     S("xapp-"
       "1-A0123456789-1234567890123-" H32 H32),
     S("xapp-"
       "1-short")},
    {"slack_webhook_url", "Slack incoming webhook URL", SEC, HIGH, TKW, KW("hooks.slack.com"),
     "(https://hooks\\.slack\\.com/(?:services|workflows)/T[A-Z0-9]{8,10}/B[A-Z0-9]{8,10}/"
     "[A-Za-z0-9]{24})(?![A-Za-z0-9])",
     3.0, VNONE, 0, 0, S("https://hooks.slack.com/services/T00000000/B00000000/" A10 B10 "Xy3Z"),
     S("https://hooks.slack.com/services/")},
    {"discord_bot_token", "Discord bot token", SEC, HIGH, TKW, KW("discord"),
     "(?i)discord[A-Za-z0-9_ .-]{0,20}(?:token|secret)" ASSIGN
     "([A-Za-z0-9_-]{24,26}\\.[A-Za-z0-9_-]{6}\\.[A-Za-z0-9_-]{27,38})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0,
     S("DISCORD_TOKEN="
       "MTA" A10 B10 "Xy"
       "."
       "Gh4Ij5"
       "." A10 B10 "Xy3Z5Wq"),
     S("discord_token = os.getenv('DISCORD')")},
    {"discord_webhook_url", "Discord webhook URL", SEC, HIGH, TKW, KW("discord"),
     "(https://(?:ptb\\.|canary\\.)?discord(?:app)?\\.com/api/webhooks/[0-9]{17,20}/"
     "[A-Za-z0-9_-]{60,68})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0, S("https://discord.com/api/webhooks/123456789012345678/" A40 B10 C10),
     S("https://discord.com/api/webhooks/")},
    {"telegram_bot_token", "Telegram bot token", SEC, HIGH, TKW, KW(":aa"),
     "(?<![0-9])([0-9]{8,10}:AA[0-9A-Za-z_-]{33})(?![0-9A-Za-z_-])", 3.0, VNONE, 0, 0,
     S("bot123456789:AA" A10 B10 C10 "Xy3"),
     S("12:AA"
       "short")},
    {"twilio_api_key", "Twilio API key", SEC, HIGH, TKW, KW("twilio"),
     "(?i)twilio[A-Za-z0-9_ .-]{0,20}" ASSIGN "(SK[0-9a-f]{32})(?![0-9a-f])", 3.0, VNONE, 0, 0,
     S("TWILIO_API_KEY=SK" H32), S("twilio_api_key = None")},
    {"sendgrid_api_key", "SendGrid API key", SEC, HIGH, TKW, KW("sg."),
     "(?<![A-Za-z0-9])(SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])", 3.0, VNONE, 0,
     0,
     S("SG." A10 B10 "Xy"
       "." A40 "Xy3"),
     S("SG.short.key")},
    {"mailgun_api_key", "Mailgun API key", SEC, HIGH, TKW, KW("key-"),
     "(?<![A-Za-z0-9])(key-[0-9a-f]{32})(?![0-9a-f])", 3.0, VNONE, 0, 0, S("key-" H32),
     S("key-value", "key-"
                    "00000000000000000000000000000000")},
    {"mailchimp_api_key", "Mailchimp API key", SEC, HIGH, TKW, KW("-us"),
     "(?<![0-9a-f])([0-9a-f]{32}-us[0-9]{1,2})(?![0-9])", 3.0, VNONE, 0, 0, S(H32 "-us21"),
     S("abc-us1")},
    {"teams_webhook_url", "Microsoft Teams incoming webhook URL", SEC, HIGH, TKW,
     KW("webhook.office.com"),
     "(https://[a-z0-9-]+\\.webhook\\.office\\.com/webhookb2/[A-Za-z0-9@/-]{60,200})", 3.0, VNONE,
     0, 0, S("https://fake.webhook.office.com/webhookb2/" UUID "@" UUID "/IncomingWebhook/" H32),
     S("https://fake.webhook.office.com/webhookb2/")},
    /* ---- AI APIs ---- */
    {"openai_api_key", "OpenAI API key", SEC, CRIT, TKW, KW("t3blbkfj"),
     "(?<![A-Za-z0-9_-])(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,150}T3BlbkFJ[A-Za-z0-9_-]"
     "{20,150})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0,
     S("sk-proj-" A10 B10 "T3Blbk"
       "FJ" A10 B10),
     S("T3Blbk"
       "FJ")},
    {"anthropic_api_key", "Anthropic API key", SEC, CRIT, TKW, KW("sk-ant-"),
     "(sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA)(?![A-Za-z0-9_-])", 3.0, VNONE, 0, 0,
     S("sk-ant-"
       "api03-" A40 A40 A10 "Xy3"
       "AA"),
     S("sk-ant-"
       "api03-short")},
    {"huggingface_token", "Hugging Face access token", SEC, HIGH, TKW, KW("hf_"),
     TOKEN("hf_", "[A-Za-z]{34}"), 3.0, VNONE, 0, 0,
     S("hf_"
       "FakeXqLmPzKwTnBRcHyJdVGeNsUtWbQrSt"),
     S("hf_"
       "short",
       "hf_"
       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")},
    {"replicate_api_token", "Replicate API token", SEC, HIGH, TKW, KW("r8_"),
     TOKEN("r8_", "[A-Za-z0-9]{37}"), 3.0, VNONE, 0, 0, S("r8_" A10 B10 C10 "Xy3Z5Wq"),
     S("r8_"
       "short")},
    {"groq_api_key", "Groq API key", SEC, HIGH, TKW, KW("gsk_"), TOKEN("gsk_", "[A-Za-z0-9]{52}"),
     3.0, VNONE, 0, 0, S("gsk_" A40 "Xy3Z5Wq7Rt9U"),
     S("gsk_"
       "short")},
    {"perplexity_api_key", "Perplexity API key", SEC, HIGH, TKW, KW("pplx-"),
     TOKEN("pplx-", "[A-Za-z0-9]{48}"), 3.0, VNONE, 0, 0, S("pplx-" A40 "Xy3Z5Wq7"),
     S("pplx-"
       "short")},
    {"xai_api_key", "xAI API key", SEC, HIGH, TKW, KW("xai-"),
     TOKEN_DASH("xai-", "[A-Za-z0-9]{80}"), 3.0, VNONE, 0, 0, S("xai-" A40 A40),
     S("xai-"
       "short")},
    {"cohere_api_key", "Cohere API key", SEC, HIGH, TKW, KW("cohere", "co_api", "coapi"),
     "(?i)(?:cohere|co)_?api_?key" ASSIGN "([A-Za-z0-9]{40})(?![A-Za-z0-9])", 3.5, VNONE, 0, 0,
     S("COHERE_API_KEY=" A40), S("cohere_api_key: str = None")},
    /* ---- package registries ---- */
    {"npm_token", "npm access token", SEC, CRIT, TKW, KW("npm_"), TOKEN("npm_", "[A-Za-z0-9]{36}"),
     3.0, VNONE, 0, 0, S("//registry.npmjs.org/:_authToken=npm_" A10 B10 C10 "FAKE01"),
     S("npm_"
       "config_cache")},
    {"pypi_token", "PyPI upload token", SEC, CRIT, TKW, KW("pypi-ageichlwas5vcmc"),
     "(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,300})(?![A-Za-z0-9_-])", 3.0, VNONE, 0, 0,
     S("password = pypi-"
       "AgEIcHlwaS5vcmc" A40 B10),
     S("pypi-"
       "AgEIcHlwaS5vcmc"
       "short")},
    {"rubygems_api_key", "RubyGems API key", SEC, HIGH, TKW, KW("rubygems_"),
     TOKEN("rubygems_", "[a-f0-9]{48}"), 3.0, VNONE, 0, 0, S("rubygems_" H32 H16),
     S("rubygems_"
       "version")},
    {"nuget_api_key", "NuGet API key", SEC, HIGH, TKW, KW("oy2"),
     "(?<![a-z0-9])(oy2[a-z0-9]{43})(?![a-z0-9])", 3.0, VNONE, 0, 0, S("oy2" a10 b10 c10 d10 "abc"),
     S("oy2"
       "short")},
    {"dockerhub_pat", "Docker Hub personal access token", SEC, HIGH, TKW, KW("dckr_pat_"),
     TOKEN_DASH("dckr_pat_", "[A-Za-z0-9_-]{27}"), 3.0, VNONE, 0, 0,
     S("dckr_pat_" A10 B10 "Xy3Z5Wq"),
     S("dckr_pat_"
       "short")},
    {"crates_io_token", "crates.io API token", SEC, HIGH, TKW, KW("cio"),
     TOKEN("cio", "[A-Za-z0-9]{32}"), 3.0, VNONE, 0, 0, S("cio" A10 B10 C10 "Xy"),
     S("precision", "cio"
                    "short")},
    {"artifactory_api_key", "JFrog Artifactory API key", SEC, HIGH, TKW, KW("artifactory"),
     "(?i)artifactory[A-Za-z0-9_ .-]{0,20}" ASSIGN "(AKC[A-Za-z0-9]{10,80})(?![A-Za-z0-9])", 3.0,
     VNONE, 0, 0, S("ARTIFACTORY_API_KEY=AKC" A40 B10), S("artifactory_url = https://x")},
    /* ---- infrastructure and SaaS ---- */
    {"hashicorp_vault_token", "HashiCorp Vault service token", SEC, CRIT, TKW, KW("hvs."),
     TOKEN_DASH("hvs\\.", "[A-Za-z0-9_-]{90,120}"), 3.0, VNONE, 0, 0, S("hvs." A40 A40 A10),
     S("hvs."
       "short")},
    {"terraform_cloud_token", "Terraform Cloud / HCP API token", SEC, CRIT, TKW, KW(".atlasv1."),
     "(?<![A-Za-z0-9])([A-Za-z0-9]{14}\\.atlasv1\\.[A-Za-z0-9_=-]{60,70})(?![A-Za-z0-9_=-])", 3.0,
     VNONE, 0, 0,
     S("Fak3Xq7Lm2Pz9K"
       ".atlasv1." A40 B10 C10),
     S("x.atlasv1.short")},
    {"grafana_service_account_token", "Grafana service account token", SEC, HIGH, TKW, KW("glsa_"),
     TOKEN("glsa_", "[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"), 3.0, VNONE, 0, 0,
     S("glsa_" A10 B10 C10 "Xy"
       "_"
       "0a1b2c3d"),
     S("glsa_"
       "short")},
    {"doppler_token", "Doppler service token", SEC, HIGH, TKW, KW("dp.pt."),
     "(?<![A-Za-z0-9])(dp\\.pt\\.[a-z0-9]{43})(?![a-z0-9])", 3.0, VNONE, 0, 0,
     S("dp.pt." a10 b10 c10 d10 "abc"),
     S("dp.pt."
       "short")},
    {"pulumi_access_token", "Pulumi access token", SEC, HIGH, TKW, KW("pul-"),
     TOKEN_DASH("pul-", "[a-f0-9]{40}"), 3.0, VNONE, 0, 0, S("pul-" H40),
     S("pul-"
       "short")},
    {"postman_api_key", "Postman API key", SEC, HIGH, TKW, KW("pmak-"),
     TOKEN_DASH("PMAK-", "[a-f0-9]{24}-[a-f0-9]{34}"), 3.0, VNONE, 0, 0,
     S("PMAK-"
       "0123456789abcdef01234567"
       "-"
       "01" H32),
     S("PMAK-"
       "short")},
    {"sentry_dsn", "Sentry DSN with its key", SEC, MED, TKW, KW("sentry.io"),
     "(?i)https://([0-9a-f]{32})@[a-z0-9.-]+\\.ingest\\.(?:[a-z]+\\.)?sentry\\.io/[0-9]+", 3.0,
     VNONE, 0, 0, S("dsn = \"https://" H32 "@o123.ingest.sentry.io/4504\""),
     S("https://sentry.io/organizations/x/")},
    {"datadog_api_key", "Datadog API key", SEC, HIGH, TKW, KW("datadog", "dd_api", "ddapi"),
     "(?i)(?:datadog|dd)_?api_?key" ASSIGN "([a-f0-9]{32})(?![a-f0-9])", 3.0, VNONE, 0, 0,
     S("DD_API_KEY=" H32), S("dd_api_key: <DATADOG_API_KEY>")},
    {"new_relic_license_key", "New Relic license key", SEC, HIGH, TKW, KW("newrelic", "new_relic"),
     "(?i)new_?relic_?license_?key" ASSIGN "([A-Za-z0-9]{40})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("NEW_RELIC_LICENSE_KEY=" H32 "0a1bNRAL"), S("new_relic_license_key: ''")},
    {"linear_api_key", "Linear API key", SEC, HIGH, TKW, KW("lin_api_"),
     TOKEN("lin_api_", "[A-Za-z0-9]{40}"), 3.0, VNONE, 0, 0, S("lin_api_" A40),
     S("lin_api_"
       "short")},
    {"atlassian_api_token", "Atlassian API token", SEC, HIGH, TKW, KW("atatt3"),
     "(?<![A-Za-z0-9])(ATATT3[A-Za-z0-9_=-]{186})(?![A-Za-z0-9_=-])", 3.0, VNONE, 0, 0,
     S("ATATT3" A40 A40 A40 A40 A10 B10 "Xy3Z5W"),
     S("ATATT3"
       "short")},
    {"age_secret_key", "age encryption secret key", SEC, CRIT, TKW, KW("age-secret-key-1"),
     "(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})", 3.0, VNONE, 0, 0,
     S("AGE-SECRET-KEY-1"
       "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"
       "QPZRY9X8GF2TVDW0S3JN54KHCE"),
     S("AGE-SECRET-KEY-1"
       "SHORT")},
    {"mapbox_secret_token", "Mapbox secret access token", SEC, HIGH, TKW, KW("sk.eyj"),
     "(?<![A-Za-z0-9])(sk\\.eyJ[A-Za-z0-9_-]{50,300}\\.[A-Za-z0-9_-]{20,100})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0, S("sk.eyJ" A40 B10 "." A10 B10),
     S("sk.eyJ"
       "short")},
    {"facebook_access_token", "Facebook (Meta) access token", SEC, HIGH, TKW, KW("eaacedeose0cba"),
     "(EAACEdEose0cBA[0-9A-Za-z]{20,300})(?![0-9A-Za-z])", 3.0, VNONE, 0, 0,
     S("EAACEdEose0cBA" A10 B10),
     S("EAACEdEose0cBA"
       "short")},
    /* ---- keys, tokens and URLs of any provider ---- */
    {"private_key_block", "PEM/OpenSSH/PGP private key block", SEC, CRIT, TKW, KW("-----begin"),
     /* the body cannot hold "-----", so it stops at the next armour line: an
        unterminated BEGIN costs the distance to the next dashes, not SAFETY_MAX_SPAN */
     "-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: "
     "BLOCK)?-----(?=(?:[^-]|-(?!----)){20})(?:[^-]++|-(?!----))*+"
     "-----END[ "
     "A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----",
     0.0, VNONE, 1, 0,
     S("-----BEGIN RSA PRIVATE"
       " KEY-----\nMIIEowIBAAKCAQEA" A40 "\n-----END RSA PRIVATE KEY-----",
       "-----BEGIN OPENSSH PRIVATE"
       " KEY-----\n" A40 "\n" B10 "\n-----END OPENSSH PRIVATE KEY-----"),
     S("-----BEGIN PUBLIC KEY-----\nMIIB" A40 "\n-----END PUBLIC KEY-----", "-----BEGIN RSA PRIVATE"
                                                                            " KEY-----\n")},
    {"jwt", "JSON Web Token", SEC, MED, TKW, KW("eyj"),
     "(?<![A-Za-z0-9_-])(eyJ[A-Za-z0-9_-]{10,2000}\\.eyJ[A-Za-z0-9_-]{10,4000}\\.[A-Za-z0-9_-]{10,"
     "2000})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0,
     S("Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
       "."
       "eyJzdWIiOiIxMjM0NTY3ODkw"
       "IiwibmFtZSI6IkZha2UifQ"
       "." A10 B10 "Xy3"),
     S("eyJhbGciOiJIUzI1NiJ9", "eyJ"
                               "aaaaaaaaaaaa.eyJ"
                               "aaaaaaaaaaaa.aaaaaaaaaaaa")},
    {"postgres_url_password", "PostgreSQL URL with a password", SEC, CRIT, TKW,
     KW("postgres://", "postgresql://"), DB_URL("postgres|postgresql"), 2.0, VNONE, 0, 0,
     S("DATABASE_URL=postgres://app:"
       "s3cr3tFAKEpw"
       "@db.internal:5432/app"),
     S("postgres://app@localhost/db", "postgres://localhost:5432/db")},
    {"mysql_url_password", "MySQL/MariaDB URL with a password", SEC, CRIT, TKW,
     KW("mysql://", "mariadb://"), DB_URL("mysql|mariadb"), 2.0, VNONE, 0, 0,
     S("mysql://root:"
       "s3cr3tFAKEpw"
       "@127.0.0.1:3306/app"),
     S("mysql://localhost/app")},
    {"mongodb_url_password", "MongoDB URL with a password", SEC, CRIT, TKW,
     KW("mongodb://", "mongodb+srv://"), DB_URL("mongodb|mongodb\\+srv"), 2.0, VNONE, 0, 0,
     S("mongodb+srv://app:"
       "s3cr3tFAKEpw"
       "@cluster0.mongodb.net/db"),
     S("mongodb://localhost:27017/db")},
    {"redis_url_password", "Redis URL with a password", SEC, HIGH, TKW, KW("redis://", "rediss://"),
     DB_URL("redis|rediss"), 2.0, VNONE, 0, 0,
     S("redis://:"
       "s3cr3tFAKEpw"
       "@cache:6379/0"),
     S("redis://localhost:6379/0")},
    {"amqp_url_password", "AMQP (RabbitMQ) URL with a password", SEC, HIGH, TKW,
     KW("amqp://", "amqps://"), DB_URL("amqp|amqps"), 2.0, VNONE, 0, 0,
     S("amqp://guest:"
       "s3cr3tFAKEpw"
       "@rabbit:5672/"),
     S("amqp://rabbit:5672/")},
    {"url_basic_auth", "HTTP/FTP URL with a password", SEC, HIGH, TKW,
     KW("http://", "https://", "ftp://"),
     "(?i)(?<![A-Za-z0-9+.-])(?:https?|ftp)://[^:@/ \\t\\n\"'<>]{1,64}:([^@/ \\t\\n\"'<>]{3,128})@"
     "[A-Za-z0-9.-]+",
     2.5, VNONE, 0, 0,
     S("https://deploy:"
       "s3cr3tFAKEpw"
       "@git.internal/repo.git"),
     S("https://example.com:8080/path", "http://user@host/")},
    {"generic_secret_assignment", "Secret-looking value assigned to a secret-named key", SEC, HIGH,
     TKW,
     KW("secret", "token", "passw", "pwd", "apikey", "api_key", "api-key", "authkey", "auth_key",
        "auth-key", "accesskey", "access_key", "access-key", "privatekey", "private_key",
        "private-key", "credential"),
     "(?i)(?:secret|token|passw(?:or)?d|pwd|api[_-]?key|auth[_-]?key|access[_-]?key|private[_-]?"
     "key|credential)s?[A-Za-z0-9_.-]{0,20}" ASSIGN
     "([A-Za-z0-9_+/=@#$%^&*!.~-]{12,100})(?![A-Za-z0-9_+/=@#$%^&*!.~(-])",
     3.5, SAFETY_VALID_MIXED, 0, 1,
     S("api_key = \"" A10 B10 "\"", "DB_PASSWORD="
                                    "Xk9#mP2$vL7qR4"),
     S("password = os.getenv(\"DB_PASSWORD\")", "max_tokens: 100000000000000",
       "token = tokenizer_encode123(x)",
       "self, private_key: ed25519.Ed25519PrivateKey, f_priv: _FragList")},
    /* ---- passwords by position, framework keys ---- */
    {"cli_password_argument", "Password given on a command line (mysql -p, sshpass -p)", SEC, HIGH,
     TKW, KW("mysql", "mariadb", "sshpass"),
     "(?i)(?:\\b(?:mysql(?:dump|admin)?|mariadb(?:-dump)?)\\b[^\\n|;&]{0,200}?\\s(?:-p|--password=)"
     "|\\bsshpass\\s+-p\\s*)[\"\\']?([^\\s\"\\'$<>{}`]{3,128})",
     1.5, VNONE, 0, 0,
     S("mysql -u root -pLc"
       "vcrUg6P3g4iM appdb",
       "sshpass -p 'LcvcrUg6P3g"
       "4iM' ssh deploy@10.0.0.5",
       "mysqldump --password=Lcvc"
       "rUg6P3g4iM app > dump.sql"),
     S("mysql -u root -p appdb", "sshpass -p \"$SSHPASS\" ssh host", "mysql -p${DB_PASS} app")},
    {"curl_user_password", "curl -u user:password on a command line", SEC, HIGH, TKW, KW("curl"),
     "(?i)\\bcurl\\b[^\\n|;&]{0,300}?\\s(?:-u|--user)\\s*[\"\\']?[^\\s:\"\\']{1,64}:([^\\s\"\\'$<>{"
     "}@`]{3,128})",
     1.5, VNONE, 0, 0,
     S("curl -u admin:LcvcrUg6P3g"
       "4iM https://api.corp.io/v1",
       "curl --user \"ci:LcvcrUg6P3"
       "g4iM\" -X POST https://x.io"),
     S("curl -u \"$USER:$PASS\" https://x.io", "curl -u admin https://x.io")},
    {"bearer_token_header", "Bearer token in an Authorization header", SEC, HIGH, TKW, KW("bearer"),
     "(?i)authorization[\"\\']?\\s*[:=]\\s*[\"\\']?bearer\\s+([A-Za-z0-9._~+/=-]{20,2000})", 3.3,
     VNONE, 0, 1,
     S("curl -H \"Authorization: Bearer ijR3AAZodEK3z"
       "QQvCdy29cqeCXkhvHsZBKy5\" https://api.corp.io",
       "headers = {'Authorization': 'Bearer i"
       "jR3AAZodEK3zQQvCdy29cqeCXkhvHsZBKy5'}"),
     S("\"Authorization: Bearer ${TOKEN}\"", "Authorization: Bearer <token>")},
    {"aws_cli_configure", "AWS credential set with aws configure set", SEC, CRIT, TKW,
     KW("aws configure set"),
     "(?i)aws configure set "
     "(?:aws_secret_access_key|aws_session_token)\\s+[\"\\']?([A-Za-z0-9/+=]{16,1024})",
     3.0, VNONE, 0, 0,
     S("aws configure set aws_secret_access_key "
       "LPC6Urz/TXE8eJZaJP8xZrS0lu5xo/xiDLU+A/Ic"),
     S("aws configure set aws_secret_access_key $AWS_SECRET_ACCESS_KEY",
       "aws configure set region eu-west-1")},
    {"pgpass_entry", "PostgreSQL password file (.pgpass) entry", SEC, HIGH, TDIG, KW(NULL),
     "(?m)^[^:\\s#]{1,255}:[0-9]{4,5}:[^:\\s]{1,63}:[^:\\s]{1,63}:([^:\\s]{3,128})$", 1.5, VNONE, 0,
     0,
     S("db.internal:5432:app:a"
       "pp_user:LcvcrUg6P3g4iM",
       "localhost:5433:*:p"
       "ostgres:npWmqHMtLr"),
     S("12:30:45:00", "fe80:0000:0000:0000:0202:b3ff:fe1e:8329", "localhost:5432:app:app_user")},
    {"netrc_password", ".netrc machine entry with a password", SEC, HIGH, TKW, KW("machine"),
     "(?i)\\bmachine\\s+\\S{1,255}\\s+login\\s+\\S{1,128}\\s+password\\s+([^\\s$<>{}]{3,128})", 1.5,
     VNONE, 0, 0,
     S("machine api.heroku.com login me"
       "@corp.io password LcvcrUg6P3g4iM"),
     S("machine api.heroku.com login me@corp.io",
       "the state machine login flow uses password prompts")},
    {"xml_password_element", "Password in an XML element (Maven settings.xml, server configs)", SEC,
     HIGH, TKW, KW("<password>", "<passphrase>"),
     "(?i)<(?:password|passphrase)>([^<>${}\\s]{3,128})</(?:password|passphrase)>", 1.5, VNONE, 0,
     0,
     S("<server><id>nexus</id><username>ci</username"
       "><password>LcvcrUg6P3g4iM</password></server>"),
     S("<password>${env.NEXUS_PASSWORD}</password>", "<password></password>")},
    {"sql_password", "Password in SQL CREATE/ALTER USER or ROLE, IDENTIFIED BY", SEC, HIGH, TKW,
     KW("identified", "create", "alter"),
     "(?i)(?:\\bidentified\\s+by(?:\\s+password)?\\s*|\\b(?:create|alter)\\s+(?:user|role|login)"
     "\\b[^;\\n]{0,200}?\\bpassword\\s*=?\\s*)'([^'\\s%$<>{}]{3,128})'",
     1.5, VNONE, 0, 0,
     S("CREATE USER app WITH LOGIN"
       " PASSWORD 'LcvcrUg6P3g4iM';",
       "CREATE USER 'app'@'%' IDEN"
       "TIFIED BY 'LcvcrUg6P3g4iM';",
       "ALTER ROLE app PASSW"
       "ORD 'LcvcrUg6P3g4iM';"),
     S("CREATE USER app WITH PASSWORD '%s'", "CREATE TABLE password_resets (token text);",
       "IDENTIFIED BY ''")},
    {"connection_string_password", "Password in a JDBC/ODBC/ADO.NET connection string", SEC, HIGH,
     TKW, KW("jdbc:", "server=", "data source=", "host=", "uid=", "user id="),
     "(?i)(?:jdbc:[a-z0-9]+:|server=|data source=|host=|uid=|user "
     "id=)[^\\n\"\\'`]{0,200}?(?:password|pwd)=([^;&\\s\"\\'$<>{}`]{3,128})",
     1.5, VNONE, 0, 0,
     S("jdbc:postgresql://db:5432/app?u"
       "ser=app&password=LcvcrUg6P3g4iM",
       "Server=tcp:db.corp.io,1433;Database=ap"
       "p;User Id=app;Password=LcvcrUg6P3g4iM;",
       "Driver={ODBC};Server=db;U"
       "id=sa;Pwd=LcvcrUg6P3g4iM;"),
     S("jdbc:postgresql://db:5432/app?user=app", "Server=db;Password=${DB_PASSWORD};")},
    {"kubeconfig_client_key", "Client private key embedded in a kubeconfig", SEC, CRIT, TKW,
     KW("client-key-data"), "client-key-data:\\s*[\"\\']?([A-Za-z0-9+/=]{40,})", 3.5, VNONE, 0, 0,
     S("    client-key-data: sqsnfNVIW2vUEe0UBs+wffUI409Hk"
       "GhlE1fVyIrST9GgR9DbuTv2+9nRjRBwQDhpf1gzRRSMyMXD5SJP"),
     S("    client-key-data: \"\"",
       "    client-certificate-data: "
       "sqsnfNVIW2vUEe0UBs+wffUI409HkGhlE1fVyIrST9GgR9DbuTv2+9nRjRBwQDhpf1gzRRSMyMXD5SJP")},
    {"jwk_private_key", "Private part of a JSON Web Key (its \"d\" member)", SEC, CRIT, TKW,
     KW("\"d\":", "\"d\" :"), "\"d\" ?:\\s*\"([A-Za-z0-9_-]{32,})\"", 3.5, VNONE, 0, 0,
     S("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8T"
       "us9uPHvRVEU\",\"d\":\"kQmpy-cVXXwZFHBx7IyWdgoFfxTnl_MHpnlYIpZtIo1\"}"),
     S("{\"kty\":\"EC\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\"}",
       "{\"d\": \"short\"}")},
    {"putty_private_key", "PuTTY private key (.ppk)", SEC, CRIT, TKW, KW("private-lines:"),
     "Private-Lines: *[0-9]+\\r?\\n([A-Za-z0-9+/=]{16,}(?:\\r?\\n[A-Za-z0-9+/=]{16,}){0,200})", 3.5,
     VNONE, 1, 0,
     S("PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\nNJJ5C48xzJcDG3F"
       "fjz26ezxp+dKE9W+vb5hf9/xnwAUoZnySLWKmw7NV3aqvYhKD\nPrivate-MAC: 0a1b"),
     S("Private-Lines: 1\n\n",
       "Public-Lines: 2\nNJJ5C48xzJcDG3Ffjz26ezxp+dKE9W+vb5hf9/xnwAUoZnySLWKmw7NV3aqvYhKD")},
    {"django_secret_key", "Django SECRET_KEY", SEC, HIGH, TKW, KW("secret_key"),
     "(?<![A-Za-z0-9_])(?:DJANGO_)?SECRET_KEY\\s*=\\s*[\"']([^\"'\\s$<>{}]{30,200})[\"']", 3.5,
     VNONE, 0, 0,
     S("SECRET_KEY = 'django-insecure-u6"
       "qj(6mp#-r_ykz3z13%*r*l*y%rgmncw^'"),
     S("SECRET_KEY = os.environ['SECRET_KEY']", "SECRET_KEY = 'short'")},
    {"rails_secret_key_base", "Rails secret_key_base", SEC, HIGH, TKW, KW("secret_key_base"),
     "(?i)secret_key_base[\"']?\\s*[:=]\\s*[\"']?([0-9a-f]{64,})", 3.0, VNONE, 0, 0,
     S("  secret_key_base: b021cee704396eb0b54d196dc77e022d641fffa484b99022536b8b"
       "151f8c5137b8d66d2a761b50bff5e081639c6eb0b580c55d679eb27c5bb40d0636b9357def"),
     S("  secret_key_base: <%= ENV[\"SECRET_KEY_BASE\"] %>")},
    {"laravel_app_key", "Laravel APP_KEY", SEC, HIGH, TKW, KW("app_key"),
     "(?<![A-Za-z0-9_])APP_KEY\\s*=\\s*[\"']?(base64:[A-Za-z0-9+/]{32,}={0,2})", 3.5, VNONE, 0, 0,
     S("APP_KEY=base64:YbgX3wc+9hF6aE"
       "r4mRcUwSyEAl6Z+d9HDvQ/q7tx5Jg="),
     S("APP_KEY=", "APP_KEY=${LARAVEL_KEY}")},
    {"wordpress_salt", "WordPress authentication key or salt", SEC, HIGH, TKW, KW("define("),
     "(?i)define\\(\\s*['\"](?:AUTH|SECURE_AUTH|LOGGED_IN|NONCE)_(?:KEY|SALT)['\"]\\s*,\\s*'([^'"
     "\\n]{32,})'\\s*\\)",
     4.0, VNONE, 0, 0,
     S("define('AUTH_KEY',         'Nv.g6PZ}qJnf=QShN?>"
       "l,b%aR@@bE?q.^vBYSkHh0HP<.%Cd}4!#*)v3=C=uSsz4');"),
     S("define('AUTH_KEY',         'put your unique phrase here');", "define('WP_DEBUG', false);")},
    {"databricks_token", "Databricks access token", SEC, HIGH, TKW, KW("dapi"),
     "(?<![A-Za-z0-9_])(dapi[0-9a-f]{32}(?:-[0-9])?)(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"dapie7e70e72bf"
       "4508aa961e5640547353c3\""),
     S("token = \"dapie7e70e72bf4508aa\"")},
    {"dynatrace_token", "Dynatrace API token", SEC, HIGH, TKW, KW("dt0c01."),
     "(?<![A-Za-z0-9_])(dt0c01\\.[A-Z0-9]{24}\\.[A-Z0-9]{64})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"dt0c01.2DGYYGTAC2HHVUDHGPU347SY.X4ANKL37XM63"
       "PBURB6N23URFB7WC2J2RZJS4FKLMXRWJN73KBDKUCRL43E2ZEKKN\""),
     S("token = \"dt0c01.2DGYYGTAC2HHVUDHGPU347SY.X4ANKL37XM63PBURB6N\"")},
    {"easypost_api_key", "EasyPost API key", SEC, HIGH, TKW, KW("ezak"),
     "(?<![A-Za-z0-9_])(EZAK[0-9A-Za-z]{54})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"EZAKHTtueQDZy85divGrgPm9Z"
       "xNChrVpXdM2BdiNLCPPL8XAt2Q7seRyYj\""),
     S("token = \"EZAKHTtueQDZy85divGrgPm9ZxNChrV\"")},
    {"flutterwave_secret_key", "Flutterwave secret key", SEC, HIGH, TKW, KW("flwseck"),
     "(?<![A-Za-z0-9_])(FLWSECK(?:_TEST)?-[0-9a-f]{32}-X)(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"FLWSECK-c685bf4ab"
       "492179ac5c08867306c6f65-X\""),
     S("token = \"FLWSECK-c685bf4ab492179ac\"")},
    {"frameio_api_token", "Frame.io API token", SEC, HIGH, TKW, KW("fio-u-"),
     "(?<![A-Za-z0-9_])(fio-u-[A-Za-z0-9_=-]{64})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"fio-u-sdatU2JjaDJwAzFLfHzgDErWH"
       "MioUse8wUc2bxmHTYAvc639SfrW9vS7YJjYsrYP\""),
     S("token = \"fio-u-sdatU2JjaDJwAzFLfHzgDErWHMioUse8\"")},
    {"grafana_cloud_token", "Grafana Cloud API token", SEC, HIGH, TKW, KW("glc_"),
     "(?<![A-Za-z0-9_])(glc_[A-Za-z0-9+/]{32,400}={0,2})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"glc_rL5FT33LAXCL3YvPiB"
       "C4BMWnumQ7J7WqwLpzNGMxVcSWPxba\""),
     S("token = \"glc_rL5FT33LAXCL3YvPiBC4BMWn\"")},
    {"gitlab_runner_auth_token", "GitLab runner authentication token", SEC, HIGH, TKW, KW("glrt-"),
     "(?<![A-Za-z0-9_])(glrt-[A-Za-z0-9_-]{20})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"glrt-337"
       "UyxCRVWQV5d28NFqf\""),
     S("token = \"glrt-337UyxCRVW\"")},
    {"gitlab_oauth_app_secret", "GitLab OAuth application secret", SEC, HIGH, TKW, KW("gloas-"),
     "(?<![A-Za-z0-9_])(gloas-[A-Za-z0-9_-]{64})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"gloas-fwv3MMxqeD9ahFwmhL5mHq4Ax"
       "2BVjKxrAr9E8eFncZp8b3ehySMnVrzQVEKLcsWm\""),
     S("token = \"gloas-fwv3MMxqeD9ahFwmhL5mHq4Ax2BVjKxr\"")},
    {"hashicorp_vault_batch_token", "HashiCorp Vault batch token", SEC, CRIT, TKW, KW("hvb."),
     "(?<![A-Za-z0-9_])(hvb\\.[A-Za-z0-9_-]{138,300})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"hvb.S2YbkyHZkiDFsN9RfXgUi6RtmgT2NunWWqoygkczQr8SPtMkjLGxMS6zgdpkTRiS"
       "F8ps4rH7UnEPkLvAi2mi43rRrdvcu7ubSqvMdNAwUacNttSxrt7bhUoxQDtZSZXjdiDSuLQ8MGXs\""),
     S("token = \"hvb.S2YbkyHZkiDFsN9RfXgUi6RtmgT2NunWWqoygkczQr8SPtMkjLGxMS6zgdpkTRiSF8ps4r\"")},
    {"new_relic_user_api_key", "New Relic user API key", SEC, HIGH, TKW, KW("nrak-"),
     "(?<![A-Za-z0-9_])(NRAK-[A-Z0-9]{27})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"NRAK-QLMWFCD"
       "8ML32V7CLKM26L32XHPM\""),
     S("token = \"NRAK-QLMWFCD8ML32V\"")},
    {"notion_token", "Notion integration token", SEC, HIGH, TKW, KW("ntn_"),
     "(?<![A-Za-z0-9_])(ntn_[0-9]{11}[A-Za-z0-9]{35})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"ntn_11501658674F4xbDz"
       "2jnSKYjhFW6Gfbcse5gzU9q4DcRsD\""),
     S("token = \"ntn_11501658674F4xbDz2jnSKY\"")},
    {"onepassword_service_token", "1Password service account token", SEC, CRIT, TKW, KW("ops_eyj"),
     "(?<![A-Za-z0-9_])(ops_eyJ[A-Za-z0-9+/=_-]{250,2000})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = "
       "\"ops_"
       "eyJ23ywnSRgSTn3mdQ2y2daX994NWZ63Uz5UueBrFTEtHhsgW36dXaQjSE37JMkyENZrbjmibhGjzKF4qbwhNc3QQT5"
       "PBLsxNDXpbpvyNnHbU6F5oT9zCvz67Rh4a"
       "dYDZgysTBBkJChmoaWwfwzFo7T5ruDSyWVMxCJpLnC5Si7LaqjQ3BFSdvr3F3jYagg3SEhry7XRktXPAL4gwsrrboLA"
       "jAgSEKMS6CJstnQgrr6NNZ7gWD8KJsYUctTVZaZP85pM878\""),
     S("token = "
       "\"ops_"
       "eyJ23ywnSRgSTn3mdQ2y2daX994NWZ63Uz5UueBrFTEtHhsgW36dXaQjSE37JMkyENZrbjmibhGjzKF4qbwhNc3QQT5"
       "PBLsxNDXpbpvyNnHbU6F5oT9zCvz67Rh4adYDZgysT\"")},
    {"planetscale_token", "PlanetScale API token or password", SEC, HIGH, TKW, KW("pscale_"),
     "(?<![A-Za-z0-9_])(pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64})(?![A-Za-z0-9])", 3.0, VNONE,
     0, 0,
     S("token = \"pscale_tkn_X8mC93TRjSrk"
       "n6cQspWXKmAypDnC4fLhudf7jK6jddu\""),
     S("token = \"pscale_tkn_X8mC93TRjSrkn6cQspWXK\"")},
    {"prefect_api_key", "Prefect API key", SEC, HIGH, TKW, KW("pnu_"),
     "(?<![A-Za-z0-9_])(pnu_[A-Za-z0-9]{36})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"pnu_sQKj8jkCXgHm"
       "idWSdHUBSRVg5uMEXXfxrYeM\""),
     S("token = \"pnu_sQKj8jkCXgHmidWSdH\"")},
    {"readme_api_key", "ReadMe API key", SEC, HIGH, TKW, KW("rdme_"),
     "(?<![A-Za-z0-9_])(rdme_[a-z0-9]{70})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"rdme_4x7p9mq8fzkexj5t7zvfnzupdvyu"
       "vbmazu5hkeboq4e2koe5bf83ci74niadxinu9gum3x\""),
     S("token = \"rdme_4x7p9mq8fzkexj5t7zvfnzupdvyuvbmazu5\"")},
    {"brevo_api_key", "Brevo (Sendinblue) API key", SEC, HIGH, TKW, KW("xkeysib-"),
     "(?<![A-Za-z0-9_])(xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"xkeysib-c28ed91d7149fe29bc2197f8d3b04ad0"
       "49b3ec34b16454ee38e541b2d29b826b-QpigWMgUE7VMd92K\""),
     S("token = \"xkeysib-c28ed91d7149fe29bc2197f8d3b04ad049b3ec34\"")},
    {"shippo_api_token", "Shippo API token", SEC, HIGH, TKW, KW("shippo_"),
     "(?<![A-Za-z0-9_])(shippo_(?:live|test)_[a-f0-9]{40})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"shippo_live_dd0886cce5"
       "72eebe3938663270a1e3a369e0be4d\""),
     S("token = \"shippo_live_dd0886cce572eebe3938\"")},
    {"sourcegraph_token", "Sourcegraph access token", SEC, HIGH, TKW, KW("sgp_"),
     "(?<![A-Za-z0-9_])(sgp_(?:[a-f0-9]{16}_)?[a-f0-9]{40})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"sgp_07e6e48647449b"
       "5cf037d2e3b5be7f53b11c0405\""),
     S("token = \"sgp_07e6e48647449b5cf037\"")},
    {"typeform_token", "Typeform personal access token", SEC, HIGH, TKW, KW("tfp_"),
     "(?<![A-Za-z0-9_])(tfp_[A-Za-z0-9_.=-]{59})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"tfp_UvTUXpkyKvR4kTWtaxjAZBp"
       "zv9vcfZGpjUHWWCiffwUbQFERBAJ4EChwwfs\""),
     S("token = \"tfp_UvTUXpkyKvR4kTWtaxjAZBpzv9vcf\"")},
    {"sentry_org_token", "Sentry organisation auth token", SEC, HIGH, TKW, KW("sntrys_"),
     "(?<![A-Za-z0-9_])(sntrys_eyJ[A-Za-z0-9+/=_-]{50,400})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"sntrys_eyJoVb4cb5dt5LK8qGnNko6FqRhYRQwFCw"
       "EcQyabB7RWiud433JKkEfdqQAkKGHheFFphDeATzL2HQpyKGy\""),
     S("token = \"sntrys_eyJoVb4cb5dt5LK8qGnNko6FqRhYRQwFCwEcQyabB7R\"")},
    {"sentry_user_token", "Sentry user auth token", SEC, HIGH, TKW, KW("sntryu_"),
     "(?<![A-Za-z0-9_])(sntryu_[a-f0-9]{64})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"sntryu_99f7720d9ffe6ba8faf146a2"
       "a95c932c79feb0525c0c52fbdd5e13892c7ba371\""),
     S("token = \"sntryu_99f7720d9ffe6ba8faf146a2a95c932c\"")},
    {"duffel_api_token", "Duffel API token", SEC, HIGH, TKW, KW("duffel_"),
     "(?<![A-Za-z0-9_])(duffel_(?:test|live)_[A-Za-z0-9_=-]{43})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"duffel_live_5MDBNfqYEHS"
       "9Tvv7YEMfvLmEUcMZDyJgsDzseCJmGUE\""),
     S("token = \"duffel_live_5MDBNfqYEHS9Tvv7YEMfv\"")},
    {"infracost_api_token", "Infracost API token", SEC, MED, TKW, KW("ico-"),
     "(?<![A-Za-z0-9_])(ico-[A-Za-z0-9]{32})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"ico-yDhQGvg5LN"
       "6aq3tnzNWk4a59TB8DEi9A\""),
     S("token = \"ico-yDhQGvg5LN6aq3tn\"")},
    {"openshift_user_token", "OpenShift user token", SEC, HIGH, TKW, KW("sha256~"),
     "(?<![A-Za-z0-9_])(sha256~[A-Za-z0-9_-]{43})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"sha256~DdUfm9Ld2zqKAe"
       "MxjfzMz7YifW5rHKuqfrocuHD5HQT\""),
     S("token = \"sha256~DdUfm9Ld2zqKAeMxjfzMz\"")},
    {"scalingo_api_token", "Scalingo API token", SEC, HIGH, TKW, KW("tk-us-"),
     "(?<![A-Za-z0-9_])(tk-us-[A-Za-z0-9_-]{48})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"tk-us-FxqYJyDsm8wT25aF2"
       "FJJ7Y3LMwWGoGLro5ZD6pKBu3HZppXu\""),
     S("token = \"tk-us-FxqYJyDsm8wT25aF2FJJ7Y3L\"")},
    {"defined_networking_key", "Defined Networking API key", SEC, HIGH, TKW, KW("dnkey-"),
     "(?<![A-Za-z0-9_])(dnkey-[a-z0-9=_-]{26}-[a-z0-9=_-]{52})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("token = \"dnkey-h459rbnsbohkmw3n5myq25rzyi-2ixgx"
       "x745wipnevqe67pnp5eebo5kjo3zqw2cpgw3rsntj5hhvm5\""),
     S("token = \"dnkey-h459rbnsbohkmw3n5myq25rzyi-2ixgxx745wip\"")},
    {"plaid_access_token", "Plaid access token", SEC, HIGH, TKW, KW("access-production-"),
     "(?<![A-Za-z0-9_])(access-production-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{"
     "12})(?![A-Za-z0-9])",
     3.0, VNONE, 0, 0,
     S("token = \"access-production-d2068"
       "5fe-83a6-d079-80ff-1512e0d5ac81\""),
     S("token = \"access-production-d20685fe-83a6-d079\"")},
    {"okta_api_token", "Okta API token", SEC, HIGH, TKW, KW("okta"),
     "(?i)okta[A-Za-z0-9_ .-]{0,20}" ASSIGN "(00[A-Za-z0-9_-]{40})(?![A-Za-z0-9_-])", 3.0, VNONE, 0,
     0,
     S("OKTA_API_KEY = \"00wWujmLJMFxf"
       "y6jezw3w4b3oiXCHLATRXNpZhUXL3\""),
     S("OKTA_API_KEY = \"${OKTA_KEY}\"")},
    {"hubspot_api_key", "HubSpot API key", SEC, HIGH, TKW, KW("hubspot"),
     "(?i)hubspot[A-Za-z0-9_ .-]{0,20}" ASSIGN
     "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0,
     S("HUBSPOT_API_KEY = \"c492f54a-"
       "693e-a91a-9dfc-8489f3546950\""),
     S("HUBSPOT_API_KEY = \"${HUBSPOT_KEY}\"")},
    {"algolia_api_key", "Algolia API key", SEC, HIGH, TKW, KW("algolia"),
     "(?i)algolia[A-Za-z0-9_ .-]{0,20}" ASSIGN "([a-f0-9]{32})(?![A-Za-z0-9_-])", 3.0, VNONE, 0, 0,
     S("ALGOLIA_API_KEY = \"2e972e6"
       "87632b59cd4753f76dd5b3b27\""),
     S("ALGOLIA_API_KEY = \"${ALGOLIA_KEY}\"")},
    {"snyk_api_token", "Snyk API token", SEC, HIGH, TKW, KW("snyk"),
     "(?i)snyk[A-Za-z0-9_ .-]{0,20}" ASSIGN
     "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0,
     S("SNYK_API_KEY = \"5e809ca1-0"
       "a4e-d74e-8b7a-a44f3c2c3c6e\""),
     S("SNYK_API_KEY = \"${SNYK_KEY}\"")},
    {"fastly_api_token", "Fastly API token", SEC, HIGH, TKW, KW("fastly"),
     "(?i)fastly[A-Za-z0-9_ .-]{0,20}" ASSIGN "([A-Za-z0-9_-]{32})(?![A-Za-z0-9_-])", 3.0, VNONE, 0,
     0,
     S("FASTLY_API_KEY = \"rGyAToo"
       "jEsVFZYwzoWWvA9CGTTEEgUPP\""),
     S("FASTLY_API_KEY = \"${FASTLY_KEY}\"")},
    {"zendesk_api_token", "Zendesk API token", SEC, HIGH, TKW, KW("zendesk"),
     "(?i)zendesk[A-Za-z0-9_ .-]{0,20}" ASSIGN "([A-Za-z0-9]{40})(?![A-Za-z0-9_-])", 3.0, VNONE, 0,
     0,
     S("ZENDESK_API_KEY = \"ik5D8ksCk6p"
       "pRQb7y4UT5CNgWQtJTZUHzjZZ6Tvy\""),
     S("ZENDESK_API_KEY = \"${ZENDESK_KEY}\"")},
    {"netlify_access_token", "Netlify access token", SEC, HIGH, TKW, KW("netlify"),
     "(?i)netlify[A-Za-z0-9_ .-]{0,20}" ASSIGN "([A-Za-z0-9_-]{40,46})(?![A-Za-z0-9_-])", 3.0,
     VNONE, 0, 0,
     S("NETLIFY_API_KEY = \"6LjGU8udcDex"
       "MEXT3gt3doFacnWSw73e4mdZJ26CkGn\""),
     S("NETLIFY_API_KEY = \"${NETLIFY_KEY}\"")},
    {"twitter_bearer_token", "Twitter (X) bearer token", SEC, HIGH, TKW, KW("twitter"),
     "(?i)twitter[A-Za-z0-9_ .-]{0,20}" ASSIGN "(A{22}[A-Za-z0-9%]{80,120})(?![A-Za-z0-9_-])", 3.0,
     VNONE, 0, 0,
     S("TWITTER_API_KEY = \"AAAAAAAAAAAAAAAAAAAAAAuPHcgsCHQsv92R5TLFXaRZT9p"
       "DSxmfpLnebHoGkKSg8FBvdNCcxBfmzrnoaEs7Lu7SEFSrcGyepJSMGfBHxg754S5Q\""),
     S("TWITTER_API_KEY = \"${TWITTER_KEY}\"")},
    /* ---- kinds from the gitleaks checklist (docs/safety.md); own patterns ---- */
    {"gitlab_other_token", "GitLab job, feed, mail, agent, feature-flag or SCIM token", SEC, HIGH,
     TKW, KW("glcbt-", "glffct-", "glft-", "glimt-", "glagent-", "glsoat-"),
     "(?<![A-Za-z0-9_-])(glcbt-(?:[0-9a-f]{1,5}_)?[A-Za-z0-9_-]{20}|glffct-[A-Za-z0-9_-]{20}|glft-["
     "A-Za-z0-9_-]{20}|glimt-[A-Za-z0-9_-]{25}|glagent-[A-Za-z0-9_-]{50,100}|glsoat-[A-Za-z0-9_-]{"
     "20})(?![A-Za-z0-9_-])",
     3.0, VNONE, 0, 0,
     S("CI_JOB_TOKEN=glcbt-64_" A10 B10, "feed: glft-" A10 B10, "glimt-" A10 B10 "Xy3Zq",
       "glagent-" A40 B10, "glsoat-" A10 B10, "glffct-" A10 B10),
     S("glft-"
       "xxxxxxxxxxxxxxxxxxxx",
       "glft-short", "glagent-" A10)},
    {"gitlab_routable_token", "GitLab routable token (personal access or runner)", SEC, CRIT, TKW,
     KW("glpat-", "glrt-"),
     "(?<![A-Za-z0-9_-])(gl(?:pat|rt)-[A-Za-z0-9_-]{27,300}\\.[0-9a-z]{2}\\.[0-9a-z]{7,9})(?![A-Za-"
     "z0-9_.-])",
     3.0, VNONE, 0, 0,
     S("token: glpat-" A10 B10 "Xy3Zq7w"
       ".01.1k2j3h4g5",
       "glrt-t1_" A10 B10 "Xy3Zq"
       ".01.1a2b3c4d"),
     S("glpat-" A10 B10, "glpat-" A10 B10 "Xy3Zq7w.01")},
    {"gitlab_session_cookie", "GitLab session cookie", SEC, HIGH, TKW, KW("_gitlab_session="),
     "_gitlab_session=([0-9a-f]{32})(?![0-9A-Za-z])", 3.0, VNONE, 0, 0,
     S("Cookie: _gitlab_session=" H32),
     S("_gitlab_session=00000000000000000000000000000000", "_gitlab_session=$SESSION")},
    {"slack_other_token", "Slack legacy, workspace or configuration token", SEC, HIGH, TKW,
     KW("xoxa-", "xoxb-", "xoxo-", "xoxr-", "xoxs-", "xoxe.", "xoxe-"),
     "(?<![A-Za-z0-9_-])(xox[aors]-[0-9]{1,14}-[0-9A-Za-z-]{20,160}|xoxb-[0-9]{8,14}-[A-Za-z0-9]{"
     "18,26}|xoxe\\.xox[bp]-1-[A-Za-z0-9]{150,200}|xoxe-1-[A-Za-z0-9]{130,180})(?![A-Za-z0-9-])",
     3.0, VNONE, 0, 0,
     S("xoxs-"
       "1234567890-1234567890-1234567890-" H32,
       "xoxb-"
       "12345678901-" A10 B10 "Xy",
       "xoxe-"
       "1-" A40 A40 A40 B10,
       "xoxe.xoxp-"
       "1-" A40 A40 A40 B10 C10 D10),
     S("xoxs-"
       "xxxxxxxxxxxx",
       "xoxb-"
       "1234567890-1234567890-" A10 B10 "Xy3Z")},
    {"sonar_token", "SonarQube / SonarCloud token", SEC, HIGH, TKW, KW("squ_", "sqp_", "sqa_"),
     TOKEN("sq[upa]_", "[0-9a-f]{40}"), 3.0, VNONE, 0, 0, S("SONAR_TOKEN=squ_" H40),
     S("squ_" H16, "sqp_" H40 "ab")},
    {"settlemint_token", "SettleMint access token", SEC, HIGH, TKW,
     KW("sm_aat_", "sm_pat_", "sm_sat_"), TOKEN("sm_[aps]at_", "[A-Za-z0-9]{16}"), 3.0, VNONE, 0, 0,
     S("sm_pat_" A10 "Xy3Zq7"), S("sm_pat_xxxxxxxxxxxxxxxx", "sm_pat_" A10)},
    {"clojars_token", "Clojars deploy token", SEC, HIGH, TKW, KW("clojars_"),
     TOKEN("CLOJARS_", "[a-z0-9]{60}"), 3.0, VNONE, 0, 0, S("CLOJARS_" a10 b10 c10 d10 a10 b10),
     S("CLOJARS_USERNAME=me", "CLOJARS_" a10)},
    {"huggingface_org_token", "Hugging Face organisation API token", SEC, HIGH, TKW, KW("api_org_"),
     TOKEN("api_org_", "[A-Za-z]{34}"), 3.0, VNONE, 0, 0,
     S("api_org_"
       "QwErTyUiOpAsDfGhJkLzXcVbNmQaZwSxEd"),
     S("api_org_settings", "api_org_"
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")},
    {"new_relic_insert_key", "New Relic insert key", SEC, HIGH, TKW, KW("nrii-"),
     TOKEN_DASH("NRII-", "[A-Za-z0-9_-]{32}"), 3.0, VNONE, 0, 0, S("NRII-" A10 B10 C10 "Xy"),
     S("NRII-xxxx", "NRII-" A10 B10 C10)},
    {"maxmind_license_key", "MaxMind license key", SEC, HIGH, TKW, KW("_mmk"),
     "(?<![A-Za-z0-9_])([A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk)(?![A-Za-z0-9_])", 3.0, VNONE, 0, 0,
     S("MAXMIND_LICENSE_KEY=Ab3Xy9_" A10 B10 "Rc5Hy6Jd1"
       "_mmk"),
     S("my_var_mmk", "abcdef_"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx_mmk")},
    {"intra42_client_secret", "42 Intra client secret", SEC, HIGH, TKW, KW("s-s4t2"),
     TOKEN_DASH("s-s4t2(?:ud|af)-", "[a-f0-9]{64}"), 3.0, VNONE, 0, 0, S("s-s4t2ud-" H32 H32),
     S("s-s4t2ud-" H16)},
    {"adobe_client_secret", "Adobe client secret", SEC, HIGH, TKW, KW("p8e-"),
     TOKEN_DASH("p8e-", "[A-Za-z0-9]{32}"), 3.0, VNONE, 0, 0, S("p8e-" A10 B10 C10 "Xy"),
     S("p8e-xxx", "p8e-"
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")},
    {"flyio_token", "Fly.io access token", SEC, HIGH, TKW, KW("fo1_", "fm1a_", "fm1r_", "fm2_"),
     "(?<![A-Za-z0-9_])(fo1_[A-Za-z0-9_-]{43}|fm(?:1[ar]|2)_[A-Za-z0-9+/=_-]{100,1000})(?![A-Za-"
     "z0-9+/=_-])",
     3.0, VNONE, 0, 0, S("FLY_API_TOKEN=fo1_" A40 "Xy3", "FlyV1 fm2_" A40 A40 A40),
     S("fo1_short", "fm2_" A40)},
    {"aws_bedrock_api_key", "Amazon Bedrock API key (long- or short-lived)", SEC, CRIT, TKW,
     KW("absk", "bedrock-api-key-"),
     "(?<![A-Za-z0-9+/])(ABSKQmVkcm9ja0FQSUtleS[A-Za-z0-9+/]{40,300}={0,2}|bedrock-api-key-"
     "YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/]{40,2000}={0,2})(?![A-Za-z0-9+/=])",
     3.0, VNONE, 0, 0,
     S("AWS_BEARER_TOKEN_BEDROCK=ABSK"
       "QmVkcm9ja0FQSUtleS" A40 B10,
       "bedrock-api-key-"
       "YmVkcm9jay5hbWF6b25hd3MuY29t" A40 B10),
     S("ABSK"
       "QmVkcm9ja0FQSUtleSabc",
       "bedrock-api-key-name")},
    {"cloudflare_origin_ca_key", "Cloudflare Origin CA key", SEC, HIGH, TKW, KW("v1.0-"),
     "(?<![A-Za-z0-9.-])(v1\\.0-[0-9a-f]{24}-[0-9a-f]{146})(?![0-9a-f])", 3.0, VNONE, 0, 0,
     S("v1.0-" H16 "01234567"
       "-" H32 H32 H32 H32 H16 "ab"),
     S("v1.0-beta", "v1.0-" H16 "01234567")},
    {"digitalocean_refresh_token", "DigitalOcean OAuth refresh token", SEC, CRIT, TKW,
     KW("dor_v1_"), TOKEN("dor_v1_", "[a-f0-9]{64}"), 3.0, VNONE, 0, 0, S("dor_v1_" H32 H32),
     S("dor_v1_" H16)},
    {"easypost_test_key", "EasyPost test API key", SEC, MED, TKW, KW("eztk"),
     "(?<![A-Za-z0-9_])(EZTK[0-9A-Za-z]{54})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("EZTK" A40 B10 "Xy3Z"),
     S("EZTK"
       "short",
       "EZTK" A40)},
    {"flutterwave_encryption_key", "Flutterwave encryption key", SEC, HIGH, TKW, KW("flwseck_test"),
     "(?<![A-Za-z0-9_])(FLWSECK_TEST[a-f0-9]{12})(?![A-Za-z0-9-])", 3.0, VNONE, 0, 0,
     S("FLWSECK_TEST"
       "a1b2c3d4e5f6"),
     S("FLWSECK_TEST-" H32 "-X", "FLWSECK_TEST"
                                 "000000000000")},
    {"artifactory_reference_token", "JFrog Artifactory reference token", SEC, HIGH, TKW,
     KW("cmvmdgtu"), "(?<![A-Za-z0-9])(cmVmdGtuOjAxOj[A-Za-z0-9]{50})(?![A-Za-z0-9])", 3.0, VNONE,
     0, 0, S("cmVmdGtuOjAxOj" A40 B10), S("cmVmdGtuOjAxOjshort")},
    {"grafana_api_key", "Grafana API key (legacy)", SEC, HIGH, TKW, KW("eyjrijoi"),
     "(?<![A-Za-z0-9+/])(eyJrIjoi[A-Za-z0-9+/]{60,400}={0,2})(?![A-Za-z0-9+/=])", 3.0, VNONE, 0, 0,
     S("GRAFANA_API_KEY=eyJrIjoi" A40 B10 C10),
     S("eyJrIjoi"
       "short")},
    {"heroku_api_key_v2", "Heroku API key (HRKU- prefix)", SEC, HIGH, TKW, KW("hrku-"),
     TOKEN_DASH("HRKU-", "[A-Za-z0-9_-]{50,70}"), 3.0, VNONE, 0, 0, S("HRKU-AA" A40 B10 "Xy3Zq7w8"),
     S("HRKU-x", "HRKU-" A10)},
    {"yandex_api_key", "Yandex Cloud API key", SEC, HIGH, TKW, KW("aqvn"),
     TOKEN_DASH("AQVN", "[A-Za-z0-9_-]{35,38}"), 3.0, VNONE, 0, 0, S("AQVN" A10 B10 C10 "Xy3Zq"),
     S("AQVN"
       "short")},
    {"harness_api_key", "Harness personal or service account token", SEC, HIGH, TKW,
     KW("pat.", "sat."), TOKEN("[ps]at\\.", "[A-Za-z0-9_-]{22}\\.[a-f0-9]{24}\\.[A-Za-z0-9]{20}"),
     3.0, VNONE, 0, 0,
     S("pat." A10 B10 "Xy"
       "." H16 "01234567"
       "." A10 B10),
     S("pat.example.com", "sat." A10)},
    {"octopus_deploy_api_key", "Octopus Deploy API key", SEC, HIGH, TKW, KW("api-"),
     TOKEN("API-", "[A-Z0-9]{26}"), 3.0, VNONE, 0, 0,
     S("API-"
       "FAK3XQ7LM2PZ9KWT4NB8RC5HY6"),
     S("API-VERSION-HEADER", "API-"
                             "XXXXXXXXXXXXXXXXXXXXXXXXXX")},
    {"onepassword_secret_key", "1Password account secret key", SEC, CRIT, TKW, KW("a3-"),
     "(?<![A-Za-z0-9-])(A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-"
     "9]{5}-[A-Z0-9]{5})(?![A-Za-z0-9-])",
     3.0, VNONE, 0, 0,
     S("A3-"
       "K7PQ2M-9XW4RT-B8N3V-Q6HJ2-TC5LD-Z2RM8"),
     S("A3-"
       "XXXXXX-XXXXXX-XXXXX-XXXXX-XXXXX-XXXXX",
       "A3-B2")},
    {"airtable_pat", "Airtable personal access token", SEC, HIGH, TKW, KW("pat"),
     "(?<![A-Za-z0-9])(pat[A-Za-z0-9]{14}\\.[a-f0-9]{64})(?![A-Za-z0-9])", 3.0, VNONE, 0, 0,
     S("AIRTABLE_TOKEN=pat" A10 "Xy3Z"
       "." H32 H32),
     S("path.join(a, b)", "pat" A10 "Xy3Z.short")},
    {"clickhouse_cloud_secret", "ClickHouse Cloud API secret key", SEC, HIGH, TKW, KW("4b1d"),
     TOKEN("4b1d", "[A-Za-z0-9]{38}"), 3.5, VNONE, 0, 0, S("4b1d" A10 B10 C10 "Ge0Ns8Ut"),
     S("4b1d"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
       "4b1d" A10)},
    {"nuget_config_password", "Password in a NuGet.config package source", SEC, HIGH, TKW,
     KW("cleartextpassword"), "(?i)key=\"ClearTextPassword\"\\s+value=\"([^\"\\s%$]{3,128})\"", 1.5,
     VNONE, 0, 0, S("<add key=\"ClearTextPassword\" value=\"Xk9#mP2vL7qR4\" />"),
     S("<add key=\"ClearTextPassword\" value=\"%NUGET_PASSWORD%\" />")},
    /* ---- personal data ---- */
    {"email", "Email address", PII, MED, TKW, KW("@"),
     "(?<![A-Za-z0-9._%+:/"
     "-])([A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\\.){1,8}[A-Za-z]{2,24})(?!"
     "[A-Za-z0-9-])",
     0.0, SAFETY_VALID_EMAIL, 0, 0,
     S("contact: jane.doe@"
       "acme-mail.io"),
     S("@param name the name", "git@github", "icon@2x.png")},
    {"phone_us", "North American phone number", PII, MED, TDIG, KW(NULL),
     /* one separator throughout (or a parenthesised area code): clause numbers
        ("252.227-7013") and coordinate lists ("277.764 1035") mix them */
     "(?<![A-Za-z0-9+.,-])((?:\\+?1[ .-]?)?(?:\\([2-9][0-9]{2}\\) ?[2-9][0-9]{2}[ "
     ".-]|[2-9][0-9]{2}([ "
     ".-])[2-9][0-9]{2}\\2)[0-9]{4})(?![A-Za-z0-9.-]|,[0-9])",
     0.0, VNONE, 0, 0, S("call (415) 634-2817 today", "+1 415-634-2817", "tel 415.634.2817"),
     S("version 1.2.3-4567", "123-456-7890", "in Clause 252.227-7013 (c) (1) of DFARs",
       "points=\"1040,277.764 1035,267.764 1040,270.264\"")},
    {"phone_intl", "International phone number (E.164)", PII, MED, TDIG, KW(NULL),
     /* not a term of arithmetic: no operand or operator right before or after */
     "(?<![A-Za-z0-9+)\\]*/^=_.])(\\+[1-9][0-9]{0,2}(?:[ .-]?\\(?[0-9]{1,4}\\)?){1,4}[ "
     ".-]?[0-9]{4})"
     "(?![A-Za-z0-9]|[.,][0-9]|[+*/^)])",
     0.0, SAFETY_VALID_PHONE, 0, 1,
     S("tel: +44 20 7183 4590", "+4930123456789", "tel +49 30 1234567."),
     S("x = 1e+10000", "+12345", "Decimal('+35236450.6')", "np.arange(6)+98172489)",
       "abs(a[0]+1.4142135623731*I)")},
    {"phone_national", "Phone number in a national format (UK, AU, JP; DE after a label)", PII, MED,
     TDIG, KW(NULL),
     "(?i)(?<![A-Za-z0-9+.,/_-])(?<![0-9] )(0(?:20 [0-9]{4} [0-9]{4}|1[0-9]{3} [0-9]{6}|1[0-9]{2} "
     "[0-9]{3} "
     "[0-9]{4}|7[0-9]{3} [0-9]{6})|\\(0[0-9]{1,4}\\) ?[0-9]{3,4}[ -]?[0-9]{4}"
     "|0[2378] [0-9]{4} [0-9]{4}|04[0-9]{2} [0-9]{3} [0-9]{3}|0[0-9]{1,3}-[0-9]{2,4}-"
     "[0-9]{4}|(?<=tel: |tel.: |tel. |fon: |fax: |telefon: |mobil: |handy: |phone: "
     ")0[1-9][0-9]{1,4}(?: "
     "/ |/| |-)[0-9]{4,8})(?![A-Za-z0-9]|[.,/-][0-9])",
     0.0, SAFETY_VALID_NATIONAL, 0, 1,
     S("tel: 020 7183 4590", "mobile 07712 345678", "(02) 9876 5432", "0412 345 678",
       "03-1234-5678", "Tel.: 030 1234567"),
     S("id 0123-4567-8901", "2024-01-15", "version 01.02", "030 1234567", "ISBN 0-306-40615-2",
       "120 1304 01303 021302 03130")},
    {"phone_fr", "French phone number after a label (tel, phone, portable, ...)", PII, MED, TKW,
     KW("tel", "t\xc3\xa9l", "phone", "portable", "mobile", "fax", "gsm"),
     "(?i)(?:t(?:e|\xc3\xa9)l|phone|portable|mobile|fax|gsm)[^\\n0-9]{0,20}(?<![0-9+])((?:\\+33 "
     "?|0)"
     "[1-9]([ .])[0-9]{2}(?:\\2[0-9]{2}){3})(?![0-9]|[.][0-9])",
     0.0, VNONE, 0, 1,
     S("T\xc3\xa9l : 06 12 34 56 78", "portable: 07.61.23.45.67", "phone +33 6 12 34 56 78"),
     S("tel: 01 2 3", "mobile version 06 12 34 56", "06 12 34 56 78")},
    {"credit_card", "Payment card number (Luhn-valid)", PII, HIGH, TDIG, KW(NULL),
     "(?<![A-Za-z0-9./_#*-])([0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{4}(?:[0-9]{3})?|[0-9]{4}[ "
     "-]?[0-9]"
     "{6}[ -]?[0-9]{4,5})(?![A-Za-z0-9.*-])",
     0.0, SAFETY_VALID_LUHN, 0, 0,
     S("card 4929 8016 2345 6788", "amex 3762 019384 75613", "unionpay 6250946173829159",
       "jcb 3530111482905732"),
     S("card 4929 8016 2345 6787", "id 1234567812345670",
       "14633730048000000*t**14 + 4828147466240000*t**12",
       "https://chromestatus.com/feature/5068609911521280",
       "https://web.archive.org/web/20150101123456/http://x.org")},
    {"us_ssn", "US Social Security number", PII, HIGH, TDIG, KW(NULL),
     "(?<![A-Za-z0-9.-])((?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4})(?![A-Za-z0-"
     "9.-])",
     0.0, VNONE, 0, 0, S("ssn: 234-56-7891"), S("000-12-3456", "123-45-67890", "ssn: 111-22-3333")},
    {"uk_nino", "UK National Insurance number", PII, HIGH, TDIG, KW(NULL),
     "(?<![A-Za-z0-9])((?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D])(?!"
     "["
     "A-Za-z0-9])",
     0.0, VNONE, 0, 0, S("NI number AB123456C"), S("QQ123456C", "GB123456A")},
    {"iban", "International bank account number (mod-97 valid)", PII, HIGH, TDIG, KW(NULL),
     "(?<![A-Za-z0-9])([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)(?![A-Za-z0-9])",
     0.0, SAFETY_VALID_IBAN, 0, 0, S("IBAN GB89 WEST 1234 5612 3456 78", "DE44500105175407324931"),
     S("GB89 WEST 1234 5612 3456 79", "IBAN GB82 WEST 1234 5698 7654 32")},
};

const safety_rule_t *safety_rules(void) {
    return RULES;
}

int safety_rule_count(void) {
    return (int)(sizeof RULES / sizeof RULES[0]);
}

int safety_rule_find(const char *id) {
    for (int i = 0; i < safety_rule_count(); i++)
        if (!strcmp(RULES[i].id, id)) return i;
    return -1;
}

const char *safety_category_name(safety_category_t c) {
    return c == SAFETY_CAT_PII ? "pii" : "secret";
}

static const char *const SEVERITY_NAMES[] = {"low", "medium", "high", "critical"};

const char *safety_severity_name(safety_severity_t s) {
    return (s >= SAFETY_SEV_LOW && s <= SAFETY_SEV_CRITICAL) ? SEVERITY_NAMES[s] : "unknown";
}

int safety_severity_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, SEVERITY_NAMES[i])) return i;
    return -1;
}

double safety_entropy(const char *s, size_t n) {
    if (n == 0) return 0.0;
    size_t counts[256] = {0};
    for (size_t i = 0; i < n; i++) counts[(unsigned char)s[i]]++;
    double h = 0.0;
    for (int c = 0; c < 256; c++) {
        if (!counts[c]) continue;
        double p = (double)counts[c] / (double)n;
        h -= p * log2(p);
    }
    return h;
}

int safety_luhn_valid(const char *s, size_t n) {
    int sum = 0, digits = 0;
    for (size_t i = n; i-- > 0;) {
        if (s[i] < '0' || s[i] > '9') continue;
        int d = s[i] - '0';
        if (digits % 2 == 1) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
        digits++;
    }
    return digits >= 12 && sum % 10 == 0;
}

/* Card brands by issuer prefix (IIN range, inclusive, compared on the
 * first `width` digits) and the lengths each issues. */
typedef struct {
    int width, lo, hi, minlen, maxlen;
} card_brand_t;

static const card_brand_t CARD_BRANDS[] = {
    {1, 4, 4, 16, 16},          /* Visa */
    {1, 4, 4, 13, 13},          /* Visa (old 13-digit numbers) */
    {2, 51, 55, 16, 16},        /* Mastercard */
    {4, 2221, 2720, 16, 16},    /* Mastercard 2-series */
    {2, 34, 34, 15, 15},        /* American Express */
    {2, 37, 37, 15, 15},        /* American Express */
    {3, 300, 305, 14, 19},      /* Diners Club */
    {2, 36, 36, 14, 19},        /* Diners Club */
    {2, 38, 39, 16, 19},        /* Diners Club (North America) */
    {4, 6011, 6011, 16, 19},    /* Discover */
    {3, 644, 649, 16, 19},      /* Discover */
    {2, 65, 65, 16, 19},        /* Discover */
    {4, 3528, 3589, 16, 19},    /* JCB */
    {2, 62, 62, 16, 19},        /* UnionPay */
    {2, 81, 81, 16, 16},        /* UnionPay (8-series) */
    {4, 6759, 6759, 12, 19},    /* Maestro UK */
    {4, 5018, 5020, 12, 19},    /* Maestro */
    {4, 6304, 6304, 12, 19},    /* Maestro */
    {4, 2200, 2204, 16, 16},    /* Mir */
    {6, 508500, 508999, 16, 16} /* RuPay */
};

/* Card numbers: Luhn, and the prefix and length of a brand that issues them. */
static int card_valid(const char *s, size_t n) {
    char d[20];
    int digits = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= '0' && s[i] <= '9') {
            if (digits == 19) return 0;
            d[digits++] = s[i];
        }
    int brand = 0;
    for (size_t b = 0; b < sizeof CARD_BRANDS / sizeof CARD_BRANDS[0] && !brand; b++) {
        const card_brand_t *cb = &CARD_BRANDS[b];
        if (digits < cb->minlen || digits > cb->maxlen) continue;
        int prefix = 0;
        for (int k = 0; k < cb->width; k++) prefix = prefix * 10 + (d[k] - '0');
        brand = prefix >= cb->lo && prefix <= cb->hi;
    }
    return brand && safety_luhn_valid(s, n);
}

/* ISO 13616: move the first four characters to the end, letters become
 * 10..35, and the number mod 97 must be 1. Also requires four digits in a
 * row, the prefilter's trigger for this rule. */
static int iban_valid(const char *s, size_t n) {
    char buf[64];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') {
            if (m >= sizeof buf) return 0;
            buf[m++] = s[i];
        }
    if (m < 15 || m > 34) return 0;
    int run = 0, has_run = 0;
    for (size_t i = 0; i < m; i++) {
        run = (buf[i] >= '0' && buf[i] <= '9') ? run + 1 : 0;
        if (run >= 4) has_run = 1;
    }
    if (!has_run) return 0;
    unsigned rem = 0;
    for (size_t k = 0; k < m; k++) {
        char c = buf[(k + 4) % m];
        if (c >= '0' && c <= '9')
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (c >= 'A' && c <= 'Z')
            rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else
            return 0;
    }
    return rem == 1;
}

/* a.b.C: a qualified name (a type, a module path, a config reference) */
static int dotted_identifier(const char *s, size_t n) {
    int dots = 0, at_start = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (c == '.') {
            if (at_start) return 0;
            dots++;
            at_start = 1;
        } else if (at_start ? !alpha : !(alpha || (c >= '0' && c <= '9'))) {
            return 0;
        } else {
            at_start = 0;
        }
    }
    return dots > 0 && !at_start;
}

static int mixed_valid(const char *s, size_t n) {
    if (dotted_identifier(s, n)) return 0;
    int letter = 0, digit = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) letter = 1;
        if (c >= '0' && c <= '9') digit = 1;
    }
    return letter && digit;
}

static int digit_count(const char *s, size_t n) {
    int digits = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= '0' && s[i] <= '9') digits++;
    return digits;
}

static int phone_valid(const char *s, size_t n) {
    int digits = digit_count(s, n);
    return digits >= 8 && digits <= 15;
}

/* Rejects addresses whose "top-level domain" is a file extension (icon@2x.png,
 * name@1.0.tar.gz) and local parts that begin or end with a dot. */
static int email_valid(const char *s, size_t n) {
    static const char *const EXT[] = {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico",  "css",
                                      "js",  "ts",  "py",   "c",   "h",   "cc",   "cpp",  "hpp",
                                      "go",  "rs",  "java", "rb",  "md",  "txt",  "json", "yaml",
                                      "yml", "xml", "html", "gz",  "tgz", "zip",  "so",   "o"};
    const char *at = memchr(s, '@', n);
    if (!at || at == s || at[-1] == '.' || s[0] == '.') return 0;
    const char *dot = NULL;
    for (const char *p = s + n; p > at; p--)
        if (p[-1] == '.') {
            dot = p;
            break;
        }
    if (!dot) return 0;
    size_t tld = (size_t)(s + n - dot);
    for (size_t i = 0; i < sizeof EXT / sizeof EXT[0]; i++)
        if (strlen(EXT[i]) == tld && !strncasecmp(dot, EXT[i], tld)) return 0;
    return 1;
}

int safety_validate(safety_validator_t v, const char *s, size_t n) {
    switch (v) {
    case SAFETY_VALID_NONE:
        return 1;
    case SAFETY_VALID_LUHN:
        return card_valid(s, n);
    case SAFETY_VALID_IBAN:
        return iban_valid(s, n);
    case SAFETY_VALID_MIXED:
        return mixed_valid(s, n);
    case SAFETY_VALID_PHONE:
        return phone_valid(s, n);
    case SAFETY_VALID_EMAIL:
        return email_valid(s, n);
    case SAFETY_VALID_NATIONAL:
        return digit_count(s, n) >= 9 && digit_count(s, n) <= 11;
    }
    return 1;
}
