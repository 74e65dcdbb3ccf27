#include "io/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

/* Opens path for reading and checks that it is a regular file of a size that
 * fits in size_t. Returns the descriptor or -1 with err filled. */
static int open_regular(const char *path, size_t *size, ts_status *st, ts_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *st = ts_fail(err, TS_ERR_IO, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        *st = ts_fail(err, TS_ERR_IO, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        *st = ts_fail(err, TS_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        *st = ts_fail(err, TS_ERR_IO, "%s: file too large to map", path);
        close(fd);
        return -1;
    }
    *size = (size_t)sb.st_size;
    return fd;
}

ts_status ts_map_open(const char *path, ts_map *map, ts_err *err) {
    map->data = NULL;
    map->size = 0;
    ts_status st = TS_OK;
    size_t size = 0;
    int fd = open_regular(path, &size, &st, err);
    if (fd < 0) return st;
    if (size == 0) { /* mmap refuses length 0; an empty map is valid */
        close(fd);
        return TS_OK;
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping stays valid without the descriptor */
    if (p == MAP_FAILED) return ts_fail(err, TS_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    map->data = p;
    map->size = size;
    return TS_OK;
}

void ts_map_close(ts_map *map) {
    if (!map) return;
    if (map->data && map->size) munmap((void *)map->data, map->size);
    map->data = NULL;
    map->size = 0;
}

ts_status ts_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                       ts_err *err) {
    *out = NULL;
    if (len) *len = 0;
    ts_status st = TS_OK;
    size_t size = 0;
    int fd = open_regular(path, &size, &st, err);
    if (fd < 0) return st;
    if (size > max_bytes) {
        close(fd);
        return ts_fail(err, TS_ERR_CAPACITY, "%s: file has %zu bytes, more than the limit of %zu",
                       path, size, max_bytes);
    }
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ts_fail(err, TS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) { /* shrank while reading: keep what is there */
            size = got;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (st != TS_OK) {
        free(buf);
        return st;
    }
    buf[size] = '\0';
    *out = buf;
    if (len) *len = size;
    return TS_OK;
}
