#ifndef GREETING_H
#define GREETING_H

/* The greeting for name, in a static buffer. */
const char *greeting(const char *name);

#endif
