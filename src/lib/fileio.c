/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "edgeprov/fileio.h"
#include "edgeprov/macro.h"

static int write_full(int fd, const void *data, size_t len) {
        const uint8_t *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, MIN(len, (size_t) SSIZE_MAX));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Splits path into its directory ("." when there is none) and its last component. */
static int path_split(const char *path, char **ret_dir, const char **ret_base) {
        const char *slash = strrchr(path, '/');
        char *dir;

        if (!slash) {
                dir = strdup(".");
                *ret_base = path;
        } else if (slash == path) {
                dir = strdup("/");
                *ret_base = slash + 1;
        } else {
                dir = strndup(path, slash - path);
                *ret_base = slash + 1;
        }
        if (!dir)
                return -ENOMEM;
        if (isempty(*ret_base)) {
                free(dir);
                return -EISDIR;
        }
        *ret_dir = dir;
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        _cleanup_free_ char *dir = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -1, dfd = -1;
        const char *base;
        int r;

        if (isempty(path) || (!data && len > 0) || (mode & ~07777))
                return -EINVAL;

        r = path_split(path, &dir, &base);
        if (r < 0)
                return r;

        if (asprintf(&tmp, "%s/.#%s.XXXXXX", dir, base) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;

        if (fchmod(fd, mode) < 0) {
                r = -errno;
                goto fail;
        }

        r = write_full(fd, data, len);
        if (r < 0)
                goto fail;

        if (fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }

        r = close(TAKE_FD(fd));
        if (r < 0 && errno != EINTR) {
                r = -errno;
                goto fail;
        }

        if (rename(tmp, path) < 0) {
                r = -errno;
                goto fail;
        }

        /* Make the rename itself durable. */
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        if (fsync(dfd) < 0)
                return -errno;

        return 0;

fail:
        (void) unlink(tmp);
        return r;
}

/* Appends up to max bytes from fd to a buffer; -EFBIG if there is more.  Grows without
 * realloc() so that no stale copy of a secret is left in freed memory. */
static int read_fd_full(int fd, size_t max, size_t hint, char **ret, size_t *ret_len) {
        size_t size = MIN(MAX(hint, (size_t) 4096), max) + 1, n = 0;
        char *buf = malloc(size);
        int r;

        if (!buf)
                return -ENOMEM;

        for (;;) {
                if (n + 1 >= size) {
                        if (size - 1 > max) {
                                r = -EFBIG;
                                goto fail;
                        }
                        /* grow to max+2 at most: one byte to detect overflow, one for NUL */
                        size_t nsize = size - 1 >= max / 2 ? max + 2 : size * 2;
                        char *nbuf = malloc(nsize);
                        if (!nbuf) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        memcpy(nbuf, buf, n);
                        explicit_bzero(buf, size);
                        free(buf);
                        buf = nbuf;
                        size = nsize;
                }

                ssize_t k = read(fd, buf + n, size - 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max) {
                        r = -EFBIG;
                        goto fail;
                }
        }

        buf[n] = 0;
        *ret = buf;
        if (ret_len)
                *ret_len = n;
        return 0;

fail:
        explicit_bzero(buf, size);
        free(buf);
        return r;
}

static int open_regular(const char *path, struct stat *ret_st) {
        _cleanup_close_ int fd = -1;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, ret_st) < 0)
                return -errno;
        if (S_ISDIR(ret_st->st_mode))
                return -EISDIR;
        if (!S_ISREG(ret_st->st_mode))
                return -EBADFD;

        return TAKE_FD(fd);
}

int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (isempty(path) || !ret || max >= SIZE_MAX - 2)
                return -EINVAL;

        fd = open_regular(path, &st);
        if (fd < 0)
                return fd;
        if (st.st_size < 0)
                return -EIO;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        return read_fd_full(fd, max, (size_t) st.st_size, ret, ret_len);
}

int read_secret_file(const char *path, size_t max, char **ret) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        char *buf = NULL;
        size_t n = 0;
        int r;

        if (isempty(path) || !ret || max >= SIZE_MAX - 2)
                return -EINVAL;

        fd = open_regular(path, &st);
        if (fd < 0)
                return fd;
        if (st.st_mode & 0007)
                return -EPERM;
        if (st.st_size < 0)
                return -EIO;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        r = read_fd_full(fd, max, (size_t) st.st_size, &buf, &n);
        if (r < 0)
                return r;

        /* A NUL inside would silently truncate the secret. */
        if (strlen(buf) != n) {
                explicit_bzero(buf, n);
                free(buf);
                return -EBADMSG;
        }

        if (n > 0 && buf[n - 1] == '\n') {
                buf[--n] = 0;
                if (n > 0 && buf[n - 1] == '\r')
                        buf[--n] = 0;
        }

        *ret = buf;
        return 0;
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = NULL;
        struct stat st;

        if (isempty(path))
                return -EINVAL;

        p = strdup(path);
        if (!p)
                return -ENOMEM;

        /* strip trailing slashes (but keep "/") */
        size_t l = strlen(p);
        while (l > 1 && p[l - 1] == '/')
                p[--l] = 0;

        for (char *s = p + 1;; s++) {
                bool last = *s == 0;
                if (!last && *s != '/')
                        continue;
                if (s[-1] == '/') { /* "//" */
                        if (last)
                                break;
                        continue;
                }

                *s = 0;
                if (mkdir(p, last ? mode : 0755) < 0) {
                        int e = errno;
                        if (e != EEXIST)
                                return -e;
                        if (stat(p, &st) < 0)
                                return -errno;
                        if (!S_ISDIR(st.st_mode))
                                return -ENOTDIR;
                }
                if (last)
                        break;
                *s = '/';
        }

        return 0;
}

int unlink_stale_temp_files(const char *dir, const char *base) {
        _cleanup_free_ char *prefix = NULL;
        struct dirent *de;
        DIR *d;
        int n = 0;

        if (isempty(dir))
                return -EINVAL;
        if (asprintf(&prefix, ".#%s%s", strempty(base), base ? "." : "") < 0) {
                prefix = NULL;
                return -ENOMEM;
        }
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (startswith(de->d_name, prefix) && unlinkat(dirfd(d), de->d_name, 0) >= 0)
                        n++;
        closedir(d);
        return n;
}
