/*
 * Errors as values. Library code never exits or prints on a failure: it fills
 * a cu_error_t and returns its code, and the caller adds context (the file,
 * the key, the rank) until something that can report it — a main() — does.
 */
#ifndef CU_CORE_ERROR_H
#define CU_CORE_ERROR_H

#include <stddef.h>

enum {
    CU_OK = 0,
    CU_EINVAL = 2,  /* bad config or user input: exit code 2 of codex-train */
    CU_EIO = 3,     /* a file could not be read or written */
    CU_ENOMEM = 4,  /* an allocation failed */
    CU_EFORMAT = 5, /* a file was readable but not what it claims to be */
    CU_EMPI = 6,    /* the MPI layer failed */
    CU_EINTERNAL = 7,
    CU_PREEMPTED = 8, /* stopped by a signal with a checkpoint saved: exit 75 */
    CU_EPOLICY = 9,   /* refused by the safety policy */
};

typedef struct {
    int code;
    char msg[1024];
} cu_error_t;

/* Sets err (if non-NULL) to code and a printf-style message; returns code. */
int cu_error_set(cu_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with more context, e.g. the file it concerns. Returns err->code. */
int cu_error_prefix(cu_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void cu_error_clear(cu_error_t *err);

/* snprintf into buf that treats truncation as an error (CU_EINVAL: "name
 * too long"), for paths built from user input. */
int cu_format(char *buf, size_t cap, cu_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Allocations that report failure through err. Memory from cu_alloc_aligned
 * is 64-byte aligned (one cache line, one AVX-512 vector) and zeroed; free it
 * with free(). */
void *cu_alloc_aligned(size_t bytes, cu_error_t *err);

/* A private anonymous mapping of `bytes`: reads as zeros, and takes no
 * memory until a page is written; transparent huge pages are asked for.
 * Free with cu_free_pages. */
void *cu_alloc_pages(size_t bytes, cu_error_t *err);
void cu_free_pages(void *p, size_t bytes);

/* Sets p[0, bytes) of private anonymous memory (cu_alloc_pages, or any
 * heap memory) to zero and gives the whole pages inside back to the kernel
 * (madvise MADV_DONTNEED: they read as zeros and are faulted in again only
 * when written); the partial pages at the ends are cleared with memset.
 * Clearing a range whose pages are already given back touches nothing. */
void cu_zero_release(void *p, size_t bytes);

#endif
