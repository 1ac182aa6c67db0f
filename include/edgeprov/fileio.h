/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Crash-safe replacement of path: the data goes to a temporary file in the same
 * directory (created with mode), which is fsync()ed and renamed over path; then the
 * directory is fsync()ed.  At every instant path holds either the old or the new content. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Removes the temporary files write_file_atomic() leaves in dir when the process dies between
 * creating and renaming them (SIGKILL, power cut): ".#<base>.XXXXXX", or every ".#*" when base
 * is NULL.  Only while nothing writes into dir (at start).  Returns the number removed. */
int unlink_stale_temp_files(const char *dir, const char *base);

/* Reads a whole regular file of at most max bytes (-EFBIG beyond).  The result is
 * NUL-terminated; ret_len (optional) excludes the NUL. */
int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len);

/* Reads a secret file: like read_file_full, but refuses files that are readable or
 * writable by "other" (-EPERM), and strips one trailing newline. */
int read_secret_file(const char *path, size_t max, char **ret);

/* mkdir -p with mode for the last component. */
int mkdir_p(const char *path, mode_t mode);
