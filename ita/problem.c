/*
 * Problem documents. The "type" is a stable URI per status under
 * https://codex-universal.invalid/problems/ (documented in docs/ita.md, not
 * fetched by anyone), so clients can branch on it without parsing titles.
 */
#include "ita/problem.h"

#include <jansson.h>
#include <stdio.h>

const char *ita_status_reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static const char *status_slug(int status) {
    switch (status) {
    case 400:
        return "bad-request";
    case 401:
        return "unauthenticated";
    case 403:
        return "forbidden";
    case 404:
        return "not-found";
    case 405:
        return "method-not-allowed";
    case 406:
        return "not-acceptable";
    case 409:
        return "conflict";
    case 412:
        return "precondition-failed";
    case 422:
        return "unprocessable";
    case 502:
        return "scheduler-failed";
    case 413:
        return "too-large";
    case 414:
        return "uri-too-long";
    case 429:
        return "rate-limited";
    case 431:
        return "headers-too-large";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

char *ita_problem_json(int status, const char *detail, const char *instance, size_t instance_len,
                       const char *request_id) {
    char type[96];
    snprintf(type, sizeof type, "https://codex-universal.invalid/problems/%s", status_slug(status));
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "title", json_string(ita_status_reason(status)));
    json_object_set_new(o, "status", json_integer(status));
    if (detail) json_object_set_new(o, "detail", json_string(detail));
    if (instance) {
        /* The path as the client sent it may hold any bytes; keep it only when
         * it is valid UTF-8 (jansson refuses others), bounded. */
        json_t *s = json_stringn(instance, instance_len > 512 ? 512 : instance_len);
        if (s) json_object_set_new(o, "instance", s);
    }
    if (request_id) json_object_set_new(o, "request_id", json_string(request_id));
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    return text;
}
