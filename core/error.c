/*
 * Error values and checked allocation (see error.h).
 */
#include "core/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int cu_error_set(cu_error_t *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int cu_error_prefix(cu_error_t *err, const char *fmt, ...) {
    if (!err) return CU_EINTERNAL;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* the precision keeps the result inside msg whatever the lengths */
    snprintf(err->msg, sizeof err->msg, "%.255s: %.760s", prefix, old);
    return err->code;
}

void cu_error_clear(cu_error_t *err) {
    if (!err) return;
    err->code = CU_OK;
    err->msg[0] = '\0';
}

int cu_format(char *buf, size_t cap, cu_error_t *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return cu_error_set(err, CU_EINVAL, "name too long (over %zu bytes): %.80s...", cap - 1,
                            buf);
    return CU_OK;
}

void *cu_alloc_aligned(size_t bytes, cu_error_t *err) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        cu_error_set(err, CU_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void *cu_alloc_pages(size_t bytes, cu_error_t *err) {
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        cu_error_set(err, CU_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    /* 2 MB pages where the kernel allows them: faulting a released range
     * back in 4 KB at a time costs far more (cu_zero_release) */
    madvise(p, bytes ? bytes : 1, MADV_HUGEPAGE);
    return p;
}

void cu_free_pages(void *p, size_t bytes) {
    if (p) munmap(p, bytes ? bytes : 1);
}

void cu_zero_release(void *p, size_t bytes) {
    if (bytes == 0) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + bytes;
    uintptr_t pa = (a + page - 1) / page * page, pb = b / page * page;
    if (pa >= pb || madvise((void *)pa, pb - pa, MADV_DONTNEED) != 0) {
        memset(p, 0, bytes); /* no whole page inside, or madvise refused */
        return;
    }
    memset(p, 0, pa - a);
    memset((void *)pb, 0, b - pb);
}
