/* An empty shared object into which ntconfig is linked whole, to check
 * that the library exports nothing (see CMakeLists.txt). */
int leakcheck_anchor;
