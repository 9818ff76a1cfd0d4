/* Mappings of weight files protected by a read lease (lib/model/lease.c).
 *
 * A frozen tensor served in place points into a private mapping of its
 * safetensors file. Another process that truncates or rewrites that file in
 * place (`cp new.safetensors model.safetensors` opens it with O_TRUNC) would
 * make the next access to a page not yet copied fault (SIGBUS) and take the
 * whole daemon down. al_lease_map takes a read lease on the file first: such
 * an open then blocks in the kernel, which signals us; a watcher thread
 * copies the mapping out to anonymous memory at the same address and drops
 * the lease, and the writer proceeds. A file without a lease is never
 * served (the caller copies its tensors).
 *
 * The lease signal is SIGRTMIN + AL_LEASE_SIGNAL_OFFSET, handled by this
 * module; a host that installs its own handler there turns leases off (every
 * tensor is then copied). */
#ifndef AL_LEASE_H
#define AL_LEASE_H

#include <stddef.h>

#define AL_LEASE_SIGNAL_OFFSET 5

typedef struct al_lease al_lease;

/* Maps the regular file open read-only at fd whole (MAP_PRIVATE, readable
 * and writable: a write copies the page, never reaches the file), after
 * taking a read lease on it when it can. Takes fd over in every case: with
 * a lease it is kept until al_lease_unmap, else closed. On AL_OK: *map and
 * *size (the file's size once leased; a 0-byte file gives map NULL) and
 * *lease, the protection (NULL: none: the lease was refused, say EAGAIN
 * when the file is open for writing, EACCES when another user owns it, or
 * EINVAL on a filesystem without leases; a debug line names the reason).
 * Else a negative errno (mmap or fstat failed). */
int al_lease_map(int fd, const char *name, void **map, size_t *size, al_lease **lease);
/* Unmaps what al_lease_map mapped, releasing its lease (map NULL: nothing).
 * Nothing may read the mapping any longer. */
void al_lease_unmap(void *map, size_t size);
/* Records that [p, p + n) of the mapping is served: once detached, a
 * break copies only the pages such spans touch. No-op for lease NULL. */
void al_lease_keep(al_lease *lease, const void *p, size_t n);
/* The loader is done with the mapping: from now on only kept spans are read. */
void al_lease_detach(al_lease *lease);
/* 1 once the lease broke and the mapping was copied out to anonymous
 * memory (lease NULL: 0). The mapping's contents are the same; only giving
 * its pages back (MADV_DONTNEED) would now zero them instead of re-reading
 * the file. */
int al_lease_copied(const al_lease *lease);

#endif
