#include <stdio.h>

#include "greeting.h"

const char *greeting(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "Hello, %s, from C in a mini build!", name);
    return buf;
}
