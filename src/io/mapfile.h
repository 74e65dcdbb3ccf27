/* Read-only memory mapping of a whole file. */
#ifndef TS_IO_MAPFILE_H
#define TS_IO_MAPFILE_H

#include <stddef.h>
#include "tessera.h"

typedef struct ts_map {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
} ts_map;

/* Maps path (a regular file) read-only; an empty file gives data = NULL,
 * size = 0. On failure fills err with "<path>: <strerror>" (TS_ERR_IO). */
ts_status ts_map_open(const char *path, ts_map *map, ts_err *err);
/* Unmaps; safe on a zeroed map. */
void ts_map_close(ts_map *map);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer, refusing
 * files larger than max_bytes (TS_ERR_CAPACITY). The caller frees *out; len
 * may be NULL. Errors name the path and the system's reason. */
ts_status ts_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                       ts_err *err);

#endif
