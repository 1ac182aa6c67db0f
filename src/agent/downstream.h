/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "agent/conf.h"

/* Registration of the sensors behind the gateway, each with its own identity derived from the
 * downstream enrollment group's key (device key = HMAC-SHA256(group key, registration id)).
 *
 * Every sensor's intent and result live in <state_directory>/devices/<registration id>.json,
 * one small file per sensor written with write_file_atomic(): a change costs one file write,
 * never a rewrite of all sensors.  Scheduling: at most `concurrency` registrations in flight,
 * a token bucket of `rate` per minute, retries with full jitter (never sooner than the
 * service's retry-after), permanent errors parked as FAILED with the reason. */

typedef enum SensorState {
        SENSOR_PENDING,         /* waiting for a slot, a token or the gateway's own assignment */
        SENSOR_REGISTERING,
        SENSOR_RETRYING,
        SENSOR_ASSIGNED,
        SENSOR_FAILED,          /* rejected by the service: parked, not retried */
        _SENSOR_STATE_MAX,
        _SENSOR_STATE_INVALID = -EINVAL,
} SensorState;

const char *sensor_state_to_string(SensorState s);
SensorState sensor_state_from_string(const char *s);

typedef struct Sensor {
        char *id;
        char *protocol;         /* may be NULL */
        char *options_json;     /* a JSON object, may be NULL */
        char *device_id;
        char *assigned_hub;
        char *last_error;
        char *operation_id;     /* the service accepted a registration (202): resume polling it */
        SensorState state;
        unsigned attempts;
        uint64_t provisioned_at; /* seconds since the epoch, 0 if never */
        /* scheduling */
        struct Sensor *queue_next;
        bool queued;
        /* group commit (downstream.c): a record waiting for the next batched write */
        struct Sensor *commit_next;
        int commit;             /* 0 none, else what is waiting (SensorCommit) */
        char *commit_device_id, *commit_hub;
        uint64_t commit_at;
        void *client;           /* DpsClient * while registering */
        sd_event_source *retry_timer;   /* retrying, or parked: waiting out a retry-after without a slot */
        uint64_t poll_due;      /* CLOCK_BOOTTIME µs: when the accepted operation's first poll is due */
        bool parked;            /* registering, connection closed, slot released until poll_due */
        bool resume;            /* queued to poll its parked operation: takes a slot, no rate token */
        struct Downstream *owner;
} Sensor;

/* Change notification, used by the D-Bus layer. mask: bits of SensorProperty. */
typedef enum SensorProperty {
        SENSOR_PROP_DEVICE_ID = 1 << 0,
        SENSOR_PROP_ASSIGNED_HUB = 1 << 1,
        SENSOR_PROP_STATE = 1 << 2,
        SENSOR_PROP_LAST_ERROR = 1 << 3,
        SENSOR_PROP_ATTEMPTS = 1 << 4,
        SENSOR_PROP_PROVISIONED_AT = 1 << 5,
} SensorProperty;

typedef enum SensorEvent {
        SENSOR_EVENT_ADDED,
        SENSOR_EVENT_CHANGED,
        SENSOR_EVENT_REMOVED,   /* called once it is out of the registry, before it is freed */
} SensorEvent;

typedef struct Downstream Downstream;
typedef void (*DownstreamCallback)(Downstream *d, Sensor *s, SensorEvent ev, unsigned mask, void *userdata);

/* config is borrowed and must outlive d. */
int downstream_new(sd_event *e, const Config *config, Downstream **ret);
Downstream *downstream_free(Downstream *d);
void downstream_set_callback(Downstream *d, DownstreamCallback cb, void *userdata);

/* Reads the group key (if configured) and the per-sensor files; pending sensors resume once a
 * gateway id is set. */
int downstream_start(Downstream *d);
bool downstream_is_configured(const Downstream *d);

/* The gateway's device id, sent as "gatewayId"; NULL pauses new registrations. */
int downstream_set_gateway(Downstream *d, const char *gateway_device_id);

/* Normalises and validates input, records the intent (crash-safely) and queues it.
 * options_json: a JSON object or NULL.  Existing sensor: returns it unchanged (0).
 * -EINVAL bad id (reason in *reterr), -EOPNOTSUPP no group key configured, -E2BIG too many. */
int downstream_add(Downstream *d, const char *input_id, const char *options_json, Sensor **ret,
                   const char **reterr);
/* Bulk: as downstream_add() for n entries, but the intent records of all new sensors are made
 * durable by one commit (temporary files, one syncfs, renames, one directory fsync).  For each
 * entry ret_sensors[i] is the sensor (new or existing) or NULL with ret_errors[i] (static text)
 * and ret_codes[i] (-EINVAL invalid id or options, -E2BIG too many sensors).  Returns -EOPNOTSUPP
 * (no group key), -errno if the records could not be written (nothing added), else 0. */
int downstream_add_many(Downstream *d, size_t n, const char *const *input_ids, const char *const *options_json,
                        Sensor **ret_sensors, const char **ret_errors, int *ret_codes);

/* -ENOENT unknown. */
int downstream_remove(Downstream *d, const char *id);
Sensor *downstream_find(Downstream *d, const char *id);
size_t downstream_count(const Downstream *d);
Sensor *downstream_get(const Downstream *d, size_t i);     /* sorted by id */

/* Per-sensor file format (exposed for tests and the fuzzer). */
int sensor_record_format(const Sensor *s, char **ret);
int sensor_record_parse(const char *buf, size_t len, Sensor *ret);
void sensor_done(Sensor *s);
