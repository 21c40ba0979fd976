/*
 * Whole-file reads (see fileio.h).
 */
#include "core/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cu_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int cu_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int cu_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, cu_error_t *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EINVAL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap + 1);
    int rc = b ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory reading %s", path);
    while (rc == CU_OK) {
        n += fread(b + n, 1, cap - n, f);
        if (ferror(f))
            rc = cu_error_set(err, CU_EIO, "error reading %s", path);
        else if (max_bytes > 0 && n > max_bytes)
            rc = cu_error_set(err, CU_EINVAL, "%s is larger than the limit of %zu bytes", path,
                              max_bytes);
        else if (n < cap)
            break;
        else {
            uint8_t *grown = realloc(b, cap * 2 + 1);
            if (!grown)
                rc = cu_error_set(err, CU_ENOMEM, "out of memory reading %s", path);
            else {
                b = grown;
                cap *= 2;
            }
        }
    }
    fclose(f);
    if (rc != CU_OK) {
        free(b);
        return rc;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return CU_OK;
}
