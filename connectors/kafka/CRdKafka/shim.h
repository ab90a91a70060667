#ifndef SLUICE_CRDKAFKA_SHIM_H
#define SLUICE_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
#endif
