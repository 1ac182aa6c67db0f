/* SPDX-License-Identifier: MIT */
/* A stand-in for an edgeprovd from before RegisterDevices (tests/integration/ctl-fallback.sh):
 * owns io.edgeprov.Gateway1 on the bus given as argv[1] and offers only RegisterDevice, which
 * prints each registration id (and its options) on stdout and refuses ids containing a space.
 * A fake for a path the real daemon cannot take any more: an old daemon, a new edgeprovctl. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

static unsigned calls;

static int method_register(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        char path[512], *escaped = NULL;
        const char *id, *key;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        if (strchr(id, ' '))
                return sd_bus_error_setf(error, "io.edgeprov.Error.InvalidId", "'%s' is not a valid id", id);
        printf("%s", id);
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *value = NULL;
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_read(m, "v", "s", &value);
                if (r >= 0)
                        printf(" %s=%s", key, value);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        printf("\n");
        fflush(stdout);
        calls++;
        if (r < 0)
                return r;
        r = sd_bus_path_encode("/io/edgeprov/Gateway1/devices", id, &escaped);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "%s", escaped);
        free(escaped);
        return sd_bus_reply_method_return(m, "o", path);
}

static const sd_bus_vtable vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("RegisterDevice", "sa{sv}", "o", method_register, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int main(int argc, char *argv[]) {
        sd_event *e = NULL;
        sd_bus *bus = NULL;
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: old-gateway BUS_ADDRESS\n");
                return 2;
        }
        r = sd_event_default(&e);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGTERM | SD_EVENT_SIGNAL_PROCMASK, NULL, NULL);
        if (r >= 0)
                r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, argv[1]);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, "/io/edgeprov/Gateway1", "io.edgeprov.Gateway1", vtable, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, "io.edgeprov.Gateway1", 0);
        if (r >= 0)
                r = sd_bus_attach_event(bus, e, 0);
        if (r < 0) {
                fprintf(stderr, "old-gateway: %s\n", strerror(-r));
                return 1;
        }
        fprintf(stderr, "old-gateway: ready\n");
        r = sd_event_loop(e);
        fprintf(stderr, "old-gateway: %u RegisterDevice calls\n", calls);
        sd_bus_flush_close_unref(bus);
        sd_event_unref(e);
        return r < 0 ? 1 : 0;
}
