/*
 * A minimal HTTP/1.1 client for the forge's REST API (forge.h): one request
 * per connection (Connection: close), http:// or https:// (OpenSSL, the
 * system's trust store, the host name checked), a bounded answer with
 * Content-Length, chunked or until close. Enough for GitHub's
 * `POST /repos/{owner}/{repo}/pulls`, which Gitea and Forgejo share.
 */
#include "ita/forge.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ANSWER_MAX (4 << 20)

typedef struct {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} conn_t;

static int parse_url(const char *url, int *tls, char *host, size_t hcap, char *port, size_t pcap,
                     char *base, size_t bcap) {
    const char *p;
    if (!strncmp(url, "https://", 8))
        *tls = 1, p = url + 8;
    else if (!strncmp(url, "http://", 7))
        *tls = 0, p = url + 7;
    else
        return -1;
    size_t hl = strcspn(p, ":/");
    if (!hl || hl >= hcap) return -1;
    snprintf(host, hcap, "%.*s", (int)hl, p);
    p += hl;
    snprintf(port, pcap, "%s", *tls ? "443" : "80");
    if (*p == ':') {
        size_t pl = strcspn(++p, "/");
        if (!pl || pl >= pcap) return -1;
        snprintf(port, pcap, "%.*s", (int)pl, p);
        p += pl;
    }
    snprintf(base, bcap, "%s", p);
    size_t bl = strlen(base);
    if (bl && base[bl - 1] == '/') base[bl - 1] = 0;
    return 0;
}

static int conn_open(conn_t *c, int tls, const char *host, const char *port, double timeout_s,
                     cu_error_t *err) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g) return cu_error_set(err, CU_EIO, "forge %s: %s", host, gai_strerror(g));
    c->fd = -1;
    for (struct addrinfo *a = ai; a && c->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        struct timeval tv = {(time_t)timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            c->fd = fd;
        else if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(ai);
    if (c->fd < 0)
        return cu_error_set(err, CU_EIO, "forge %s:%s: cannot connect: %s", host, port,
                            strerror(errno));
    if (!tls) return CU_OK;
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->ssl = c->ctx ? SSL_new(c->ctx) : NULL;
    if (!c->ssl) return cu_error_set(err, CU_EINTERNAL, "forge: cannot create a TLS context");
    SSL_CTX_set_default_verify_paths(c->ctx);
    SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    SSL_set_tlsext_host_name(c->ssl, host);
    SSL_set1_host(c->ssl, host);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1)
        return cu_error_set(err, CU_EIO, "forge %s: TLS handshake or certificate check failed",
                            host);
    return CU_OK;
}

static void conn_close(conn_t *c) {
    if (c->ssl) SSL_free(c->ssl);
    if (c->ctx) SSL_CTX_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
}

static int conn_write(conn_t *c, const char *p, size_t n) {
    while (n) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, p, (int)n) : write(c->fd, p, n);
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

static ssize_t conn_read(conn_t *c, char *p, size_t n) {
    return c->ssl ? SSL_read(c->ssl, p, (int)n) : read(c->fd, p, n);
}

/* Decodes a chunked body in place; returns its length or -1. */
static long dechunk(char *b, size_t len) {
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        unsigned long n = strtoul(b + in, &end, 16);
        char *nl = memchr(b + in, '\n', len - in);
        if (!nl || end == b + in) return -1;
        in = (size_t)(nl - b) + 1;
        if (n == 0) return (long)out;
        if (in + n > len) return -1;
        memmove(b + out, b + in, n);
        out += n, in += n;
        if (in + 2 <= len && b[in] == '\r') in++;
        if (in < len && b[in] == '\n') in++;
    }
}

static int parse_answer(char *buf, size_t len, forge_response_t *r, cu_error_t *err) {
    char *hend = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) || !hend || sscanf(buf + 8, " %d", &r->status) != 1)
        return cu_error_set(err, CU_EIO, "forge: not an HTTP answer");
    *hend = 0;
    char *body = hend + 4;
    size_t blen = len - (size_t)(body - buf);
    for (char *h = buf; *h; h++) *h = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
    if (strstr(buf, "\ntransfer-encoding: chunked")) {
        long n = dechunk(body, blen);
        if (n < 0) return cu_error_set(err, CU_EIO, "forge: a malformed chunked answer");
        blen = (size_t)n;
    } else {
        char *cl = strstr(buf, "\ncontent-length:");
        if (cl && strtoul(cl + 16, NULL, 10) < blen) blen = strtoul(cl + 16, NULL, 10);
    }
    r->body = malloc(blen + 1);
    if (!r->body) return cu_error_set(err, CU_ENOMEM, "out of memory");
    memcpy(r->body, body, blen);
    r->body[blen] = 0;
    r->body_len = blen;
    return CU_OK;
}

int forge_request(const char *api_url, const char *method, const char *path, const char *token,
                  const char *json, double timeout_s, forge_response_t *r, cu_error_t *err) {
    memset(r, 0, sizeof *r);
    int tls;
    char host[256], port[16], base[512];
    if (parse_url(api_url, &tls, host, sizeof host, port, sizeof port, base, sizeof base))
        return cu_error_set(err, CU_EINVAL, "forge.api_url '%s' is not an http(s) URL", api_url);
    conn_t c = {.fd = -1};
    int rc = conn_open(&c, tls, host, port, timeout_s, err);
    size_t jl = json ? strlen(json) : 0;
    char *req = rc ? NULL : malloc(2048 + jl + strlen(token));
    if (!rc && !req) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    if (!rc) {
        int n =
            sprintf(req,
                    "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: codex-ita\r\n"
                    "Accept: application/vnd.github+json\r\nX-GitHub-Api-Version: 2022-11-28\r\n"
                    "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    method, base, path, host, token, jl);
        if (conn_write(&c, req, (size_t)n) || conn_write(&c, json ? json : "", jl))
            rc = cu_error_set(err, CU_EIO, "forge %s: the request could not be sent", host);
    }
    free(req);
    char *buf = rc ? NULL : malloc(ANSWER_MAX + 1);
    size_t len = 0;
    if (!rc && !buf) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    for (ssize_t k;
         !rc && len < ANSWER_MAX && (k = conn_read(&c, buf + len, ANSWER_MAX - len)) > 0;)
        len += (size_t)k;
    conn_close(&c);
    if (!rc) {
        buf[len] = 0;
        rc = parse_answer(buf, len, r, err);
    }
    free(buf);
    return rc;
}

void forge_response_free(forge_response_t *r) {
    free(r->body);
    r->body = NULL;
}
