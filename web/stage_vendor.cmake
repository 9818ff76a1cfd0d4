# cmake -DSRC=... -DDST=... -P stage_vendor.cmake: copies one file of an npm
# package into the staged dashboard, or fails saying how to get it.
if(NOT EXISTS "${SRC}")
  message(FATAL_ERROR "${SRC} is missing: run `npm ci` in the source tree "
                      "(the dashboard's charts use uPlot from npm)")
endif()
configure_file("${SRC}" "${DST}" COPYONLY)
