#include "nttest_cr.h"
TestSuite(smoke, .timeout = 10);
Test(smoke, runs) { cr_assert(1); }
