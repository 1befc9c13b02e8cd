/* hello: prints a greeting, or greets each name it is given. */
#include <stdio.h>

#include "greeting.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        puts(greeting("world"));
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        puts(greeting(argv[i]));
    }
    return 0;
}
