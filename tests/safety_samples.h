/*
 * Fake secrets the safety tests plant in text. Each is split across two
 * string literals so this source file itself never holds a whole secret
 * (the project's own scanner, and any other, would flag it).
 */
#ifndef CU_TESTS_SAFETY_SAMPLES_H
#define CU_TESTS_SAFETY_SAMPLES_H

#define AWS                                                                                        \
    "AKIA"                                                                                         \
    "Q3EGRT7PLXW5M2ND"
#define GHP                                                                                        \
    "ghp_"                                                                                         \
    "Fak3Xq7Lm2Pz9KwT4nB8Rc5Hy6Jd1VFAKE01"
#define PEM                                                                                        \
    "-----BEGIN RSA PRIVATE"                                                                       \
    " KEY-----\nMIIEowIBAAKCAQEAFak3Xq7Lm2Pz9KwT4nB8\n-----END RSA "                               \
    "PRIVATE KEY-----\n"

#endif
