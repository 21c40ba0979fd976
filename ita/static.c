/*
 * The dashboard's files. At start every regular file of www_dir with a
 * known extension (at most 64 files of 1 MiB each) is read into memory, so
 * a request never touches the disk and no request can name a file outside
 * that set. The page's data comes from the API with the user's key.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ita/http.h"

#define WWW_FILES_MAX 64
#define WWW_FILE_MAX (1 << 20)

static const char *content_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext)) return types[i].type;
    return NULL;
}

static int load_file(const char *path, ita_static_file_t *f, cu_error_t *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(errno));
    f->body = malloc(WWW_FILE_MAX);
    size_t n = f->body ? fread(f->body, 1, WWW_FILE_MAX, fp) : 0;
    int too_big = f->body && n == WWW_FILE_MAX && fgetc(fp) != EOF;
    fclose(fp);
    if (!f->body) return cu_error_set(err, CU_ENOMEM, "out of memory");
    if (too_big) return cu_error_set(err, CU_EINVAL, "%s: larger than 1 MiB", path);
    f->len = n;
    return CU_OK;
}

int ita_static_load(ita_server_t *srv, cu_error_t *err) {
    DIR *d = opendir(srv->cfg.www_dir);
    if (!d)
        return cu_error_set(err, CU_EIO, "www_dir %s: %s (the dashboard's files)", srv->cfg.www_dir,
                            strerror(errno));
    srv->www = calloc(WWW_FILES_MAX, sizeof *srv->www);
    int rc = srv->www ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        const char *type = content_type(de->d_name);
        if (!type || de->d_name[0] == '.' || strlen(de->d_name) >= sizeof srv->www[0].name)
            continue;
        char path[ITA_PATH_MAX + 256];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", srv->cfg.www_dir, de->d_name);
        if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
        if (srv->n_www == WWW_FILES_MAX) {
            rc = cu_error_set(err, CU_EINVAL, "www_dir %s: more than %d files", srv->cfg.www_dir,
                              WWW_FILES_MAX);
            break;
        }
        ita_static_file_t *f = &srv->www[srv->n_www];
        memcpy(f->name, de->d_name, strlen(de->d_name) + 1); /* length checked above */
        f->type = type;
        rc = load_file(path, f, err);
        if (!rc)
            srv->n_www++;
        else
            free(f->body);
    }
    closedir(d);
    return rc;
}

void ita_static_free(ita_server_t *srv) {
    for (size_t i = 0; i < srv->n_www; i++) free(srv->www[i].body);
    free(srv->www);
    srv->www = NULL;
    srv->n_www = 0;
}

void ita_route_static(ita_req_t *rq, const char *name) {
    ita_server_t *srv = rq->w->srv;
    for (size_t i = 0; i < srv->n_www; i++)
        if (!strcmp(srv->www[i].name, name)) {
            ita_respond(rq, 200, srv->www[i].type, srv->www[i].body, srv->www[i].len);
            return;
        }
    ita_problem(rq, 404, "no such route");
}
