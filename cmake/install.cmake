# Install rules for the nettimeo command, its helpers, the man pages and
# the examples that are not nettimeo config files. Included from the
# top-level CMakeLists.txt after include(GNUInstallDirs); the library
# (shim/) and nettimeo-check (config/) install themselves.
#
#   ${bindir}/nettimeo                     the command (bash)
#   ${libexecdir}/nettimeo/                nettimeo-check (config/), and the
#       nettimeo-report.py, nettimeo-demo.py   python3 helpers of the command
#   ${mandir}/man1/nettimeo.1, ${mandir}/man5/nettimeo.conf.5
#   ${datadir}/doc/nettimeo/examples/      *.conf (config/), systemd-dropin.conf,
#                                          logrotate-nettimeo
#
# The installed command finds the installed library and helpers through
# paths relative to its own directory, written into the installed copy
# here: `cmake --install BUILD --prefix ELSEWHERE` keeps working, and so
# does a copy or a symlink of the command elsewhere (it resolves symlinks).

include(GNUInstallDirs)
set(NT_SCRIPTS_SRC ${PROJECT_SOURCE_DIR}/scripts)
set(NT_GEN_DIR ${PROJECT_BINARY_DIR}/install-gen)

file(RELATIVE_PATH NT_REL_LIBDIR ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})
file(RELATIVE_PATH NT_REL_LIBEXECDIR ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBEXECDIR})
if(NT_REL_LIBDIR STREQUAL "")
  set(NT_REL_LIBDIR .)
endif()
if(NT_REL_LIBEXECDIR STREQUAL "")
  set(NT_REL_LIBEXECDIR .)
endif()

# The command: the source script with the three NT_* lines filled in.
# (Not configure_file: bash is full of @ signs.) Regenerated whenever the
# script changes.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${NT_SCRIPTS_SRC}/nettimeo
             ${PROJECT_SOURCE_DIR}/config/examples/systemd-dropin.conf.in)
file(READ ${NT_SCRIPTS_SRC}/nettimeo NT_SCRIPT)
foreach(var NT_REL_LIBDIR NT_REL_LIBEXECDIR)
  string(FIND "${NT_SCRIPT}" "\n${var}=\"\"\n" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "scripts/nettimeo: no '${var}=\"\"' line to fill in")
  endif()
  string(REPLACE "\n${var}=\"\"\n" "\n${var}=\"${${var}}\"\n" NT_SCRIPT "${NT_SCRIPT}")
endforeach()
string(REPLACE "\nNT_VERSION=\"\"\n" "\nNT_VERSION=\"${PROJECT_VERSION}\"\n"
       NT_SCRIPT "${NT_SCRIPT}")
# Only touch the generated file when it changed.
set(NT_OLD_SCRIPT "")
if(EXISTS ${NT_GEN_DIR}/nettimeo)
  file(READ ${NT_GEN_DIR}/nettimeo NT_OLD_SCRIPT)
endif()
if(NOT NT_OLD_SCRIPT STREQUAL NT_SCRIPT)
  file(WRITE ${NT_GEN_DIR}/nettimeo "${NT_SCRIPT}")
endif()

install(PROGRAMS ${NT_GEN_DIR}/nettimeo DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS ${NT_SCRIPTS_SRC}/nettimeo-report.py ${NT_SCRIPTS_SRC}/nettimeo-demo.py
        DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/nettimeo)

install(FILES ${PROJECT_SOURCE_DIR}/man/nettimeo.1
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/man/nettimeo.conf.5
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)

# The systemd drop-in with this installation's paths. Its source is not
# named *.conf: config/examples/*.conf are nettimeo config files, checked
# as such by the config tests and installed by config/CMakeLists.txt.
set(NT_FULL_LIBDIR ${CMAKE_INSTALL_FULL_LIBDIR})
set(NT_FULL_BINDIR ${CMAKE_INSTALL_FULL_BINDIR})
set(NT_DOCDIR ${CMAKE_INSTALL_FULL_DATADIR}/doc/nettimeo)
configure_file(${PROJECT_SOURCE_DIR}/config/examples/systemd-dropin.conf.in
               ${NT_GEN_DIR}/systemd-dropin.conf @ONLY)
install(FILES ${NT_GEN_DIR}/systemd-dropin.conf
              ${PROJECT_SOURCE_DIR}/config/examples/logrotate-nettimeo
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/nettimeo/examples)
