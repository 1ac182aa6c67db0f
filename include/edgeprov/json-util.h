/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "edgeprov/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parses exactly one JSON value from buf (no trailing garbage), with a depth limit and a
 * size limit.  -EINVAL on malformed input, -E2BIG above max_len. */
int json_parse_limited(const void *buf, size_t len, size_t max_len, int max_depth, struct json_object **ret);

/* Borrowed string member, NULL when absent or not a string. */
const char *json_get_string(struct json_object *o, const char *key);
/* An integer member, dflt when absent or not an integer. */
int64_t json_get_int64(struct json_object *o, const char *key, int64_t dflt);
/* Duplicates a string member; -EINVAL when present but not a string, 0 with *ret=NULL when absent. */
int json_dup_string(struct json_object *o, const char *key, char **ret);

/* Adds v to o under key, taking ownership of v (it is released on failure).  A NULL v
 * (a failed json_object_new_*) gives -ENOMEM, so calls can be chained without checks. */
int json_add(struct json_object *o, const char *key, struct json_object *v);
/* Adds a string member; a NULL value adds nothing. */
int json_add_string(struct json_object *o, const char *key, const char *value);
