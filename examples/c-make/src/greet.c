#include <stdio.h>

#include "greet.h"

void greet(const char *who) {
    printf("%s, %s! (built with Debian's gcc %d.%d)\n", GREETING, who, __GNUC__, __GNUC_MINOR__);
}
