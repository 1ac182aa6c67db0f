/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

struct json_object;
struct DpsData;

/* Shared between edgeprov-dpsctl.c and the X.509 commands in cert.c (issue 6). */

#ifndef EXIT_ADMIN_API
#define EXIT_ADMIN_API 3
#endif
#define EXIT_NOT_FOUND_DPSCTL 4

int err_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The data file (--data), locked against concurrent edits; save keeps its owner and group. */
int load(struct DpsData **ret);
int save(const struct DpsData *d);
/* Sends one admin API command (--broker …) and returns its response object. */
int admin_command(struct json_object *cmd, struct json_object **ret);

/* cert root|intermediate|verification|device … */
int verb_cert(int argc, char *argv[]);
/* ca add|list|show|verification-code|verify|delete … (admin API) */
int verb_ca(int argc, char *argv[], bool json);
/* enrollment/group add … with --ca/--signing-cert/--x509-cert/--x509-thumbprint */
bool x509_enrollment_wanted(int argc, char *argv[]);
int verb_x509_enrollment(int argc, char *argv[], bool group);
