/* The launcher's environment (see dist.h): shared by the MPI and the solo
 * builds, so both read the same variables. */
#include "dist.h"

#include <stdlib.h>

int al_dist_env_world(void) {
    /* mpirun/mpiexec (Open MPI, PMIx, PMI-1/2 launchers, MVAPICH) */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                                       NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    /* srun: SLURM_NTASKS with the task's SLURM_PROCID and the step's
     * SLURM_STEP_ID (an sbatch script's own shell has no step) */
    const char *t = getenv("SLURM_NTASKS");
    if (t && getenv("SLURM_PROCID") && getenv("SLURM_STEP_ID") && atoi(t) > 0) return atoi(t);
    return 1;
}
