/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The DPS MQTT protocol (dps-protocol.md §2): usernames, topics and JSON bodies, both the
 * device side and the service side.  Every parser has a size limit and returns -EINVAL on
 * malformed input, never crashes. */

#define DPS_REGISTRATION_ID_MAX 128
#define DPS_ID_SCOPE_MAX 64
#define DPS_USERNAME_MAX 1024
#define DPS_TOPIC_MAX 1024
#define DPS_RID_MAX 128
#define DPS_OPERATION_ID_MAX 256
#define DPS_BODY_MAX (96 * 1024) /* DPS' maximum message size */
#define DPS_JSON_MAX_DEPTH 32

#define DPS_API_VERSION_DEFAULT "2019-03-31"
#define DPS_SUBSCRIBE_TOPIC "$dps/registrations/res/#"
#define DPS_RESPONSE_TOPIC_PREFIX "$dps/registrations/res/"
#define DPS_REGISTER_TOPIC_PREFIX "$dps/registrations/PUT/iotdps-register/?"
#define DPS_POLL_TOPIC_PREFIX "$dps/registrations/GET/iotdps-get-operationstatus/?"

/* Registration id rules (§1.2): 1..128 characters of [A-Za-z0-9.:_-], first and last
 * alphanumeric. */
bool dps_registration_id_is_valid(const char *id);
bool dps_id_scope_is_valid(const char *scope);

/* ---- username: {scope}/registrations/{id}/api-version=...[&ClientVersion=...] ---- */
typedef struct DpsUsername {
        char *id_scope;
        char *registration_id;
        char *api_version;     /* decoded */
        char *client_version;  /* decoded, NULL if absent */
} DpsUsername;

int dps_username_parse(const char *username, DpsUsername *ret);
void dps_username_done(DpsUsername *u);
/* client_version may be NULL; it is percent-encoded as the Node SDK does. */
int dps_username_format(const char *id_scope, const char *registration_id, const char *api_version,
                        const char *client_version, char **ret);

/* ---- request topics (device → service) ---- */
typedef enum DpsRequestType {
        DPS_REQUEST_REGISTER,
        DPS_REQUEST_OPERATION_STATUS,
        _DPS_REQUEST_TYPE_MAX,
        _DPS_REQUEST_TYPE_INVALID = -EINVAL,
} DpsRequestType;

typedef struct DpsRequestTopic {
        DpsRequestType type;
        char *rid;           /* raw, exactly as sent (echoed back byte for byte) */
        char *operation_id;  /* decoded; NULL for register */
} DpsRequestTopic;

int dps_request_topic_parse(const char *topic, DpsRequestTopic *ret);
void dps_request_topic_done(DpsRequestTopic *t);
int dps_register_topic_format(const char *rid, char **ret);
int dps_poll_topic_format(const char *rid, const char *operation_id, char **ret);

/* ---- response topics (service → device): $dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}] */
typedef struct DpsResponseTopic {
        unsigned status;
        char *rid;
        int retry_after;     /* seconds, -1 when absent */
} DpsResponseTopic;

int dps_response_topic_parse(const char *topic, DpsResponseTopic *ret);
void dps_response_topic_done(DpsResponseTopic *t);
/* retry_after < 0: no retry-after property. */
int dps_response_topic_format(unsigned status, const char *rid, int retry_after, char **ret);

/* ---- bodies ---- */
typedef enum DpsStatus {
        DPS_STATUS_UNASSIGNED,
        DPS_STATUS_ASSIGNING,
        DPS_STATUS_ASSIGNED,
        DPS_STATUS_FAILED,
        DPS_STATUS_DISABLED,
        _DPS_STATUS_MAX,
        _DPS_STATUS_INVALID = -EINVAL,
} DpsStatus;

const char *dps_status_to_string(DpsStatus s);
DpsStatus dps_status_from_string(const char *s);

typedef struct DpsRegistrationState {
        char *registration_id;
        char *assigned_hub;
        char *device_id;
        DpsStatus status;       /* _DPS_STATUS_INVALID when absent */
        char *substatus;
        char *created;
        char *last_updated;
        char *etag;
        int64_t error_code;     /* 0 when absent */
        char *error_message;
        char *payload_json;     /* the "payload" value re-serialized, NULL when absent */
        char *tpm_authentication_key;
        char *enrollment_group_id;
} DpsRegistrationState;

/* A decoded response body: either a RegistrationOperationStatus (200/202), an error
 * (ProvisioningServiceErrorDetails) or a TPM challenge (401 with authenticationKey). */
typedef struct DpsResponse {
        char *operation_id;
        DpsStatus status;             /* _DPS_STATUS_INVALID when absent */
        bool has_registration_state;
        DpsRegistrationState state;
        /* error details */
        int64_t error_code;
        char *tracking_id;
        char *message;
        /* TPM challenge */
        char *authentication_key;
        char *key_name;
} DpsResponse;

/* Decodes any response body.  An empty body yields an all-empty response (0).
 * -EINVAL: not JSON, not an object, wrong types; -E2BIG: over DPS_BODY_MAX. */
int dps_response_parse(const void *body, size_t len, DpsResponse *ret);
void dps_response_done(DpsResponse *r);

/* Register request body (§2.4).  The body may be empty, "null" payloads are accepted. */
typedef struct DpsRegisterRequest {
        char *registration_id;  /* NULL when absent */
        char *payload_json;     /* NULL when absent or null */
        char *tpm_endorsement_key;
        char *tpm_storage_root_key;
} DpsRegisterRequest;

int dps_register_request_parse(const void *body, size_t len, DpsRegisterRequest *ret);
void dps_register_request_done(DpsRegisterRequest *r);
/* payload_json is inserted as parsed JSON (it must be valid JSON); tpm keys may be NULL. */
int dps_register_request_format(const char *registration_id, const char *payload_json, const char *tpm_ek,
                                const char *tpm_srk, char **ret);
