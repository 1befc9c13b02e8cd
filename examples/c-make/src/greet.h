/* The greeting, shared by hello.c and greet.c: changing it rebuilds both. */
#ifndef GREET_H
#define GREET_H

#define GREETING "Hello"

void greet(const char *who);

#endif
