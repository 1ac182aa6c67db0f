/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* edgeprovd configuration: /etc/edgeprov/edgeprovd.conf (libconfig) plus
 * edgeprovd.conf.d/ *.conf drop-ins applied in lexical order, each overriding single keys.
 * The schema is the table in conf.c; unknown keys, wrong types and bad values are errors
 * carrying file:line. */

#define EDGEPROV_DEFAULT_CONFIG SYSCONFDIR "/edgeprov/edgeprovd.conf"
#define EDGEPROV_DEFAULT_STATE_DIR LOCALSTATEDIR "/lib/edgeprov"
#define CONF_FILE_MAX (1024 * 1024)
#define CONF_DROPINS_MAX 128

typedef enum AttestationMethod {
        ATTESTATION_SYMMETRIC_KEY,
        ATTESTATION_TPM,
        ATTESTATION_X509,       /* issue 6: src/agent/x509-identity.c */
        _ATTESTATION_MAX,
        _ATTESTATION_INVALID = -EINVAL,
} AttestationMethod;

const char *attestation_method_to_string(AttestationMethod m);
AttestationMethod attestation_method_from_string(const char *s);

typedef struct Config {
        /* provisioning */
        char *endpoint;
        int port;               /* see conf_port() */
        bool port_set;          /* provisioning.port was given */
        char *transport;        /* "mqtt", "https" or NULL: see conf_transport() */
        char *id_scope;
        char *registration_id;
        char *api_version;
        char *ca_file;
        char *payload;          /* custom JSON payload sent with the registration, or NULL */
        int sas_lifetime;       /* seconds */
        AttestationMethod attestation;
        char *key_file;
        char *certificate_file;         /* x509: the device certificate chain, leaf first */
        /* TPM attestation (src/agent/tpm.c, attest.c) */
        char *tpm_tcti;                 /* NULL: device:/dev/tpmrm0 */
        char *tpm_endorsement_auth_file;
        char *tpm_owner_auth_file;
        char *tpm_ek_ca_file;           /* manufacturer CA bundle for the EK certificate, optional */
        char *tpm_slot_a, *tpm_slot_b;  /* persistent handles for the HMAC key, "0x81000100"/"0x81000101" */
        /* agent */
        char *state_directory;
        int retry_initial;      /* seconds */
        int retry_max;          /* seconds */
        int request_timeout;    /* seconds */
        bool fail_fast;
        char *log_level;
        char *admin_group;      /* may call mutating D-Bus methods besides root (default "edgeprov") */
        /* downstream sensors (src/agent/downstream.c) */
        char *downstream_group_key_file;
        bool downstream_group_key_in_tpm;       /* the key imported with edgeprovd --import-group-key */
        int downstream_concurrency;
        int downstream_rate;    /* registrations a minute */
        char **downstream_sensors;      /* inventory, NULL-terminated, may be NULL */

        char *path;             /* the main file */
} Config;

void conf_init(Config *c);
void conf_done(Config *c);

/* Loads path and its drop-in directory (path + ".d"), validates.  On failure returns
 * -EINVAL (or -errno for I/O) and, if reterr_message is non-NULL, stores a message of the
 * form "file:line: what is wrong". */
int conf_load(const char *path, Config *ret, char **reterr_message);

/* Parses one file's text on top of c (used by config_load, the tests and the fuzzer). */
int conf_apply_string(Config *c, const char *text, const char *filename, char **reterr_message);
/* Checks required keys and cross-key rules once all files are applied. */
int conf_verify(const Config *c, char **reterr_message);

/* Resolves the key file: absolute as is; relative to $CREDENTIALS_DIRECTORY when set,
 * otherwise to the directory of the main config file. */
int conf_key_path(const Config *c, char **ret);

/* Reads and checks the key file (base64 of 16..64 bytes, not accessible to "other").
 * The key is returned in base64, as stored; the caller wipes it (erase_and_free). */
int conf_read_key(const Config *c, char **ret_key_b64, char **reterr_message);

/* A digest over every setting that defines the gateway's identity (endpoint, scope,
 * registration id, attestation, key).  A change triggers reprovisioning. */
int conf_identity_fingerprint(const Config *c, const char *key_b64, char **ret_hex);

/* The transport in effect: provisioning.transport, else "https" for TPM attestation against
 * an Azure DPS host name (conf_endpoint_is_azure), else "mqtt". */
const char *conf_transport(const Config *c);
bool conf_endpoint_is_azure(const char *host);
/* provisioning.port, else 443 for https and 8883 for mqtt. */
int conf_port(const Config *c);

/* tpm.key_slot_a/b values: a persistent handle 0x81000002..0x817fffff other than the EK. */
int conf_parse_tpm_slot(const char *v, uint32_t *ret);
