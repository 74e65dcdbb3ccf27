/* Directory store: one file per chunk, "<hex id>.chunk". A put writes a
 * temporary file ".tmp-<hex>-<pid>-<n>" in the same directory, fsyncs it,
 * renames it over the final name and fsyncs the directory, so a reader (or
 * a process restarted after kill -9) sees either no file or a complete one
 * under the final name, never a partial write. Whatever a file holds is
 * verified by ts_chunk_decode before use. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "kv/chunk_store.h"

typedef struct dir_store {
    ts_chunk_store base; /* first: the common part */
    char *path;
    int dirfd;
    uint64_t seq;
} dir_store;

#define TMP_PREFIX ".tmp-"
#define STALE_TMP_S 600
#define MAX_FILE_BYTES ((uint64_t)1 << 40)

static void file_name(const ts_chunk_id *id, char out[TS_CHUNK_HEX_LEN + 8]) {
    ts_chunk_id_to_hex(id, out);
    memcpy(out + TS_CHUNK_HEX_LEN, ".chunk", 7);
}

static ts_status write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return TS_ERR_IO;
        c += w;
        n -= (size_t)w;
    }
    return TS_OK;
}

static ts_status dir_put(ts_chunk_store *s, const ts_chunk_id *id, const void *blob, size_t n,
                         ts_err *err) {
    dir_store *d = (dir_store *)s;
    char name[TS_CHUNK_HEX_LEN + 8], tmp[TS_CHUNK_HEX_LEN + 64];
    file_name(id, name);
    char hex[TS_CHUNK_HEX_LEN + 1];
    ts_chunk_id_to_hex(id, hex);
    snprintf(tmp, sizeof tmp, TMP_PREFIX "%.16s-%ld-%llu", hex, (long)getpid(),
             (unsigned long long)d->seq++);
    int fd = openat(d->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return ts_fail(err, TS_ERR_IO, "%s/%s: cannot create (%s)", d->path, tmp, strerror(errno));
    ts_status st = write_all(fd, blob, n);
    const char *step = "write";
    if (st == TS_OK && fsync(fd) != 0) st = TS_ERR_IO, step = "fsync";
    int e = errno;
    if (close(fd) != 0 && st == TS_OK) st = TS_ERR_IO, step = "close", e = errno;
    if (st == TS_OK && renameat(d->dirfd, tmp, d->dirfd, name) != 0)
        st = TS_ERR_IO, step = "rename", e = errno;
    if (st != TS_OK) {
        unlinkat(d->dirfd, tmp, 0);
        return ts_fail(err, st, "%s/%s: %s failed (%s)", d->path, name, step, strerror(e));
    }
    fsync(d->dirfd); /* makes the rename durable; failure leaves a valid old state */
    return TS_OK;
}

static ts_status dir_get(ts_chunk_store *s, const ts_chunk_id *id, void **blob, size_t *n,
                         ts_err *err) {
    dir_store *d = (dir_store *)s;
    char name[TS_CHUNK_HEX_LEN + 8];
    file_name(id, name);
    int fd = openat(d->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return ts_fail(err, TS_ERR_NOTFOUND, "%s/%s: no such chunk", d->path, name);
        return ts_fail(err, TS_ERR_IO, "%s/%s: cannot open (%s)", d->path, name, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0 ||
        (uint64_t)sb.st_size > MAX_FILE_BYTES || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return ts_fail(err, TS_ERR_FORMAT, "%s/%s: not a regular file of a plausible size",
                       d->path, name);
    }
    size_t size = (size_t)sb.st_size;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return ts_fail(err, TS_ERR_NOMEM, "%s/%s: out of memory for %zu bytes", d->path, name, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return ts_fail(err, TS_ERR_IO, "%s/%s: read failed (%s)", d->path, name, strerror(e));
        }
        if (r == 0) break; /* shrank meanwhile: the decoder sees the short length */
        got += (size_t)r;
    }
    close(fd);
    *blob = buf;
    *n = got;
    return TS_OK;
}

static ts_status dir_del(ts_chunk_store *s, const ts_chunk_id *id, ts_err *err) {
    dir_store *d = (dir_store *)s;
    char name[TS_CHUNK_HEX_LEN + 8];
    file_name(id, name);
    if (unlinkat(d->dirfd, name, 0) != 0 && errno != ENOENT)
        return ts_fail(err, TS_ERR_IO, "%s/%s: cannot delete (%s)", d->path, name, strerror(errno));
    return TS_OK;
}

static void dir_close(ts_chunk_store *s) {
    dir_store *d = (dir_store *)s;
    if (d->dirfd >= 0) close(d->dirfd);
    free(d->path);
}

static const ts_chunk_store_vt dir_vt = {"dir", dir_put, dir_get, dir_del, dir_close};

/* Removes temporary files a killed writer left behind, once they are old
 * enough that no live writer can still be working on them. */
static void remove_stale(dir_store *d) {
    int fd = dup(d->dirfd);
    if (fd < 0) return;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return;
    }
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0) continue;
        struct stat sb;
        if (fstatat(d->dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
            now - sb.st_mtime > STALE_TMP_S) {
            if (unlinkat(d->dirfd, e->d_name, 0) == 0)
                ts_chunk_store_logf(&d->base, "%s/%s: removed a stale temporary file", d->path,
                                    e->d_name);
        }
    }
    closedir(dir);
}

ts_status ts_chunk_store_dir_open(const char *path, bool create, ts_chunk_log_fn log,
                                  void *log_ctx, ts_chunk_store **out, ts_err *err) {
    if (!path || !*path || !out) return ts_fail(err, TS_ERR_INVALID, "chunk store: missing directory");
    *out = NULL;
    if (create && mkdir(path, 0755) != 0 && errno != EEXIST)
        return ts_fail(err, TS_ERR_IO, "%s: cannot create the chunk directory (%s)", path,
                       strerror(errno));
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ts_fail(err, TS_ERR_IO, "%s: cannot open the chunk directory (%s)", path,
                       strerror(errno));
    dir_store *d = calloc(1, sizeof *d);
    char *p = strdup(path);
    if (!d || !p || ts_chunk_store_init_base(&d->base, &dir_vt, log, log_ctx) != TS_OK) {
        close(fd);
        free(d);
        free(p);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    }
    d->path = p;
    d->dirfd = fd;
    remove_stale(d);
    *out = &d->base;
    return TS_OK;
}
