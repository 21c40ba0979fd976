/*
 * The example-value table (see examples.h). Values are split across string
 * literals like the rule samples, so no line of this file holds a whole
 * token a push-protection scanner would stop.
 */
#include "safety/examples.h"

#include <string.h>

#include "safety/rules.h"

/* clang-format off */
static const safety_example_t EXAMPLES[] = {
    /* ---- providers' documentation keys ---- */
    {"documentation example keys", "aws_access_key", SAFETY_NORM_NONE,
     "AKIA" "IOSFODNN7EXAMPLE|AKIA" "I44QH8DHBEXAMPLE",
     "AWS IAM User Guide, 'Managing access keys' (docs.aws.amazon.com)",
     "aws_access_key_id = AKIA" "IOSFODNN7EXAMPLE"},
    {"documentation example keys", "aws_secret_key", SAFETY_NORM_NONE,
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" "EXAMPLEKEY|je7MtGbClwBF/2Zp9Utk/h3yCo8nvb" "EXAMPLEKEY",
     "AWS IAM User Guide, 'Managing access keys' (docs.aws.amazon.com)",
     "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY" "EXAMPLEKEY"},
    {"documentation example keys", "*secret", SAFETY_NORM_NONE,
     "2YotnFZFEjr1zCsicMWpAA|tGzv3JOkF0XG5Qx2TlKWIA|SplxlOBeZQQYbYS6WxSbIA|7Fjfp0ZBr1KtDRbnfVdmIw|"
     "gX1fBat3bV",
     "RFC 6749 (OAuth 2.0), sections 4.1-5.1: example access, refresh and code values",
     "{\"access_token\":\"2YotnFZFEjr1zCsicMWpAA\"}"},
    /* ---- well-known example tokens ---- */
    {"well-known example tokens", "jwt bearer_token_header", SAFETY_NORM_NONE,
     "eyJ[A-Za-z0-9_-]*\\.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
     "\\.[A-Za-z0-9_-]*",
     "jwt.io debugger's default token (sub 1234567890, name John Doe)",
     "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9l"
     "IiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"},
    /* ---- local emulators' fixed keys ---- */
    {"emulator keys", "azure_storage_key", SAFETY_NORM_NONE,
     "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
     "Azurite / Azure Storage Emulator well-known account key (learn.microsoft.com, 'Use the Azurite "
     "emulator')",
     "AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVE"
     "rCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"},
    /* ---- payment processors' test cards ---- */
    {"payment test cards", "credit_card", SAFETY_NORM_DIGITS,
     "4242424242424242|4000056655665556|4000002500003155|4000000000009995|5555555555554444|"
     "2223003122003222|5200828282828210|5105105105105100|378282246310005|371449635398431|"
     "6011111111111117|6011000990139424|3056930009020004|36227206271667|3566002020360505|"
     "6200000000000005|6205500000000000004",
     "Stripe, 'Testing' (docs.stripe.com/testing): test card numbers by brand",
     "card: 4242 4242 4242 4242"},
    {"payment test cards", "credit_card", SAFETY_NORM_DIGITS,
     "4111111111111111|4012888888881881|4222222222222|5431111111111111|378734493671000|"
     "6011601160116611|30569309025904|38520000023237|3530111333300000|3566111111111113|"
     "6250941006528599",
     "PayPal/Braintree sandbox and Adyen test card numbers (developer.paypal.com, docs.adyen.com)",
     "visa 4111-1111-1111-1111"},
    /* ---- phone ranges reserved for fiction ---- */
    {"fictional phone numbers", "phone_us phone_intl", SAFETY_NORM_DIGITS,
     "1?[2-9][0-9]{2}555(?:01[0-9]{2}|1212)",
     "NANPA: 555-0100 to 555-0199 reserved for fictional use; 555-1212 directory assistance",
     "call (415) 555-0132"},
    {"fictional phone numbers", "phone_intl phone_national", SAFETY_NORM_DIGITS,
     "(?:44|0)(?:2079460[0-9]{3}|1[0-9]{2}4960[0-9]{3}|1632960[0-9]{3}|7700900[0-9]{3}|"
     "8081570[0-9]{3}|9098790[0-9]{3}|3069990[0-9]{3})",
     "Ofcom, 'Telephone numbers for drama purposes' (UK)", "tel: +44 20 7946 0958"},
    {"fictional phone numbers", "phone_intl phone_national", SAFETY_NORM_DIGITS,
     "(?:61|0)(?:[2378]5550[0-9]{4}|4915[7-9][0-9]{4})",
     "ACMA, 'Phone numbers for use in TV shows, films and creative works' (Australia)",
     "phone: +61 2 5550 1234"},
    {"fictional phone numbers", "phone_intl phone_fr", SAFETY_NORM_DIGITS,
     "(?:33|0)(?:19900|26191|35301|46571|53649|63998)[0-9]{4}",
     "ARCEP, numbers reserved for works of fiction (France)", "tel: +33 1 99 00 12 34"},
    /* ---- example domains ---- */
    {"example domains", "email url_basic_auth", SAFETY_NORM_NONE,
     "(?i)[^@]*@(?:[a-z0-9-]+\\.)*(?:example\\.(?:com|net|org)|example|test|invalid|localhost)",
     "RFC 2606 and RFC 6761: example.com/.net/.org and the .example, .test, .invalid and "
     ".localhost names",
     "mail jane.doe@example.com"},
    /* ---- the standard's example IBANs ---- */
    {"example IBANs", "iban", SAFETY_NORM_ALNUM,
     "GB82WEST12345698765432|DE89370400440532013000|FR1420041010050500013M02606|"
     "NL91ABNA0417164300|ES9121000418450200051332|IT60X0542811101000000123456|"
     "CH9300762011623852957|BE68539007547034|AT611904300234573201",
     "ISO 13616 and the SWIFT IBAN Registry's example of each country", "IBAN GB82 WEST 1234 5698 7654 32"},
    /* ---- example SSNs ---- */
    {"example SSNs", "us_ssn", SAFETY_NORM_DIGITS,
     "98765432[0-9]|078051120|219099999|123456789|([0-9])\\1\\1([0-9])\\2([0-9])\\3\\3\\3",
     "SSA: 987-65-4320 to 4329 reserved for advertising; 078-05-1120 (the Woolworth wallet card), "
     "219-09-9999; one digit per group (111-22-3333) as used in documentation",
     "ssn: 111-22-3333"},
    /* ---- placeholders ---- */
    {"placeholders", "*secret", SAFETY_NORM_NONE,
     "(?i).*(?:example|sample|dummy|placeholder|change_?me|replace_?me|your[_-]?(?:api[_-]?)?(?:key|"
     "token|secret|passw(?:or)?d)|x{6,}|\\*{4,}|redacted|<[A-Za-z_ -]+>|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}|\\{\\{[^}]*\\}\\}|"
     "%\\([^)]*\\)s).*",
     "convention: words and template syntax that mark where a secret will go",
     "api_key = \"YOUR_API_KEY_" "Zq81Wx72\""},
    {"placeholders", "*secret", SAFETY_NORM_NONE,
     "(?i)(?:password|passwd|secret|pass|pwd|token|admin|root|test|guest|user|username|changeit|\\$\\{?[A-Za-z_][A-Za-z0-9_]*\\}?)",
     "convention: the word itself, or a variable ($X, ${X}), in the place of the value", "https://username:password@host.com/x"},
};
/* clang-format on */

const safety_example_t *safety_examples(void) {
    return EXAMPLES;
}

int safety_example_count(void) {
    return (int)(sizeof EXAMPLES / sizeof EXAMPLES[0]);
}

int safety_example_applies(const safety_example_t *e, int r) {
    const safety_rule_t *rule = &safety_rules()[r];
    if (!strcmp(e->rules, "*")) return 1;
    if (!strcmp(e->rules, "*secret")) return rule->category == SAFETY_CAT_SECRET;
    size_t n = strlen(rule->id);
    for (const char *p = e->rules; (p = strstr(p, rule->id)); p += n)
        if ((p == e->rules || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

size_t safety_example_normalise(safety_norm_t norm, const char *s, size_t n, char *buf,
                                size_t cap) {
    size_t m = 0;
    for (size_t i = 0; i < n && m < cap; i++) {
        char c = s[i];
        int digit = c >= '0' && c <= '9', upper = c >= 'A' && c <= 'Z',
            lower = c >= 'a' && c <= 'z';
        if (norm == SAFETY_NORM_NONE)
            buf[m++] = c;
        else if (norm == SAFETY_NORM_DIGITS && digit)
            buf[m++] = c;
        else if (norm == SAFETY_NORM_ALNUM && (digit || upper || lower))
            buf[m++] = lower ? (char)(c - 'a' + 'A') : c;
    }
    return m;
}
