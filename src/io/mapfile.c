#include "io/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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

/* ---- 2 MiB pages for large maps ----
 * A weight file is streamed from memory once per decode step; mapped with
 * 4 KiB pages that is one TLB entry (and page walk) per 4 KiB. Where the
 * kernel can map the file's page cache with PMD entries (Linux with large
 * page-cache folios on the file system, e.g. ext4 from 6.16), asking for it
 * made decode 15-20% faster on the 2-core development machine
 * (docs/PERFORMANCE.md). The page cache keeps whatever folio sizes the file
 * was first read or written with; small ones are dropped (only pages no
 * process maps) and read back in 2 MiB folios, once: later runs find them. */
#define HUGE_MIN ((size_t)64 << 20) /* smaller files: not worth a page-cache drop */
#define PMD_SIZE_B ((size_t)2 << 20)

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* kB of the mapping starting at p that are mapped by PMD entries
 * (FilePmdMapped in /proc/self/smaps), or -1 when unknown. */
static long pmd_mapped_kb(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f) return -1;
    char line[512];
    long kb = -1;
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in) break;
            in = lo == (unsigned long)(uintptr_t)p;
        } else if (in && !strncmp(line, "FilePmdMapped:", 14)) {
            kb = strtol(line + 14, NULL, 10);
        }
    }
    fclose(f);
    return kb;
}

/* Maps [off, off + len) of fd with the huge-page advice and faults it in;
 * returns the mapping or MAP_FAILED. */
static void *map_huge(int fd, size_t len, off_t off) {
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, off);
    if (p == MAP_FAILED) return p;
    madvise(p, len, MADV_HUGEPAGE);
    madvise(p, len, MADV_POPULATE_READ); /* best effort: faults stay lazy if it fails */
    return p;
}

/* Whether dropping and re-reading the file gives PMD-mapped pages here:
 * tried on two aligned 2 MiB pieces of it (a few MB read again). */
static bool huge_refill_works(int fd, size_t size) {
    const size_t len = 2 * PMD_SIZE_B;
    if (size < 2 * len) return false;
    posix_fadvise(fd, (off_t)len, (off_t)len, POSIX_FADV_DONTNEED);
    void *p = map_huge(fd, len, (off_t)len);
    if (p == MAP_FAILED) return false;
    long kb = pmd_mapped_kb(p);
    munmap(p, len);
    return kb >= (long)(PMD_SIZE_B >> 10);
}

/* Maps a large file preferring PMD-mapped page cache (see above); returns
 * the mapping or MAP_FAILED (errno set). TS_MAP_HUGE=0 maps plainly. */
static void *map_large(int fd, size_t size) {
    const char *env = getenv("TS_MAP_HUGE");
    bool big = size >= HUGE_MIN && !(env && !strcmp(env, "0"));
    long phys = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    /* faulting in a file larger than half the memory would only evict it again */
    if (phys > 0 && psz > 0 && size > (size_t)phys / 2 * (size_t)psz) big = false;
    if (!big) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    void *p = map_huge(fd, size, 0);
    if (p == MAP_FAILED) return p;
    long kb = pmd_mapped_kb(p);
    if (kb < 0 || (size_t)kb * 1024 >= size / 2) return p; /* unknown, or mostly huge already */
    munmap(p, size);
    if (huge_refill_works(fd, size)) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    return map_huge(fd, size, 0);
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
    void *p = map_large(fd, size);
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
