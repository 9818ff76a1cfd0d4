# cmake -DSRC=... -DDST=... -P stage_vendor.cmake: copies one file of an npm
# package into the staged dashboard. Without it (`npm ci` not run) the build
# goes on and says so: the daemon and every page work, the charts do not.
if(NOT EXISTS "${SRC}")
  message(WARNING "${SRC} is missing: run `npm ci` in the source tree and rebuild "
                  "for the dashboard's charts (uPlot from npm)")
  return()
endif()
configure_file("${SRC}" "${DST}" COPYONLY)
