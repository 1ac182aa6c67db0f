/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

/* The DPS HTTPS REST transport (dps-protocol.md §3): request paths, the retry-after header
 * and response header lines.  Used by the agent (src/agent/dps-http.c) and the HTTPS front of
 * the local service (src/dps/rest.c).  Every parser has a size limit and returns -EINVAL on
 * malformed input. */

#define DPS_REST_PATH_MAX 1024
#define DPS_HTTP_HEADER_LINE_MAX 8192
#define DPS_HTTP_RESPONSE_HEADERS_MAX (32 * 1024) /* all header lines of one response */

typedef enum DpsRestOp {
        DPS_REST_REGISTER,         /* PUT  /{scope}/registrations/{id}/register */
        DPS_REST_OPERATION_STATUS, /* GET  /{scope}/registrations/{id}/operations/{operationId} */
        DPS_REST_DEVICE_STATUS,    /* POST /{scope}/registrations/{id} */
        _DPS_REST_OP_MAX,
        _DPS_REST_OP_INVALID = -EINVAL,
} DpsRestOp;

typedef struct DpsRestPath {
        DpsRestOp op;
        char *id_scope;         /* decoded */
        char *registration_id;  /* decoded */
        char *operation_id;     /* decoded, operation status only */
} DpsRestPath;

/* Parses the path part of a request URL (no query string: '?' is refused), percent-decoding
 * each segment.  -EINVAL: not one of the three paths, or a segment is empty or malformed;
 * -E2BIG: longer than DPS_REST_PATH_MAX.  Ids are not validated here (the service does). */
int dps_rest_path_parse(const char *path, DpsRestPath *ret);
void dps_rest_path_done(DpsRestPath *p);
/* The method each operation uses ("PUT", "GET", "POST"). */
const char *dps_rest_op_method(DpsRestOp op);

/* The register path "/{scope}/registrations/{id}/register?api-version={v}" and the status
 * path "/{scope}/registrations/{id}/operations/{op}?api-version={v}", every part percent-encoded
 * (lower-case hex, as the C SDK does).  operation_id is required for the status path only. */
int dps_rest_path_format(DpsRestOp op, const char *id_scope, const char *registration_id,
                         const char *operation_id, const char *api_version, char **ret);

/* A retry-after header value: whole seconds (HTTP-date is not accepted: the service sends
 * seconds).  Returns the seconds, clamped to 0..86400, or -EINVAL. */
int dps_http_retry_after_parse(const char *value, size_t len);

/* One response header line as libcurl hands it over ("Name: value\r\n").  On success
 * *ret_name and *ret_value point into line (not NUL-terminated) with surrounding blanks and the
 * line end removed.  Returns 1 for a header, 0 for the status line or the empty line that
 * ends the headers, -EINVAL for anything else (no colon, blank or control bytes in the name,
 * a line over DPS_HTTP_HEADER_LINE_MAX). */
int dps_http_header_parse(const char *line, size_t len, const char **ret_name, size_t *ret_name_len,
                          const char **ret_value, size_t *ret_value_len);
/* Case-insensitive comparison of a parsed header name with a NUL-terminated one. */
bool dps_http_header_name_is(const char *name, size_t name_len, const char *want);
