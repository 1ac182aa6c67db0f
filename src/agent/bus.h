/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "agent/downstream.h"
#include "agent/manager.h"

/* The D-Bus face of edgeprovd: io.edgeprov.Gateway1 at /io/edgeprov/Gateway1 (+ ObjectManager),
 * io.edgeprov.Device1 objects under /io/edgeprov/Gateway1/devices/<escaped id>,
 * org.freedesktop.LogControl1 at /org/freedesktop/LogControl1. */

#define BUS_NAME "io.edgeprov.Gateway1"
#define BUS_PATH "/io/edgeprov/Gateway1"
#define BUS_DEVICES_PATH "/io/edgeprov/Gateway1/devices"
#define BUS_IFACE_GATEWAY "io.edgeprov.Gateway1"
#define BUS_IFACE_DEVICE "io.edgeprov.Device1"

typedef struct Bus Bus;

/* address: NULL for the system bus, "session" for the user bus, otherwise a D-Bus address.
 * Subscribes to the downstream registry's changes; the caller forwards the manager's through
 * bus_gateway_changed().  admin_group: NULL means only root may mutate. */
int bus_new(sd_event *e, Manager *m, Downstream *d, const char *address, const char *admin_group, Bus **ret);
Bus *bus_free(Bus *b);
/* Compares every Gateway1 property with what was last announced and emits PropertiesChanged. */
void bus_gateway_changed(Bus *b);
