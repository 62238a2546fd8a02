/* rill: the command line. Everything lives in librill. */
#include "rill.h"

int main(int argc, char **argv) {
  return rill_main(argc, argv);
}
