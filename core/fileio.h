/*
 * Whole-file reads with the error reporting every caller wants: the path in
 * the message, a size limit, and the buffer NUL-terminated for text use.
 */
#ifndef CU_CORE_FILEIO_H
#define CU_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Reads all of path into a malloc'd *buf (with a NUL after the last byte)
 * and its length into *len. max_bytes > 0 refuses larger files (CU_EINVAL).
 * A missing or unreadable file is CU_EINVAL (bad input), a read error
 * CU_EIO. */
int cu_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, cu_error_t *err);

/* Whether path names a directory / a regular file (following links). */
int cu_is_dir(const char *path);
int cu_is_file(const char *path);

#endif
