/* safetensors reader and writer (https://github.com/huggingface/safetensors):
 * 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data buffer; offsets are relative to the buffer's start.
 *
 * The reader validates everything before trusting it: header length within
 * the file and below 100 MB, JSON well formed, dtype known, shape product
 * times element size equal to the offset span, spans inside the buffer, no
 * duplicate names. Hostile files get AL_EFORMAT with the tensor named.
 * Sharded checkpoints (model.safetensors.index.json with a weight_map) are
 * read through al_st_dir, which looks names up across shards. */
#ifndef AL_SAFETENSORS_H
#define AL_SAFETENSORS_H

#include "../al.h"

typedef enum { AL_DT_F32 = 1, AL_DT_F16, AL_DT_BF16 } al_dtype;

#define AL_ST_MAXDIM 4

typedef struct al_st_tensor {
    char *name;
    al_dtype dtype;
    int ndim;
    int64_t shape[AL_ST_MAXDIM];
    uint64_t begin, end;          /* byte offsets into the data buffer */
} al_st_tensor;

struct al_lease;

typedef struct al_st_file {
    char *path;
    int fd;                       /* the copies' pread (a dup; the lease keeps its own); -1: none */
    const uint8_t *map;           /* whole file, mapped private (lib/model/lease.c) */
    struct al_lease *lease;       /* the read lease protecting map; NULL: none, nothing served */
    size_t size;
    size_t data_off;              /* 8 + header length */
    al_st_tensor *t;
    int n;
} al_st_file;

/* Opens and validates. Unsupported dtypes (I64, F64 ...) are listed with
 * dtype 0 and only fail when read. */
int al_st_open(al_st_file *f, const char *path, char err[AL_ERRLEN]);
void al_st_close(al_st_file *f);
const al_st_tensor *al_st_find(const al_st_file *f, const char *name);
/* Number of elements of t. */
size_t al_st_numel(const al_st_tensor *t);
/* Converts t into n floats at dst (n must equal numel, else AL_ESHAPE).
 * F16 and BF16 are widened exactly; unknown dtype -> AL_EUNSUP. The file
 * is read with pread(2) where it can be (f->fd; nothing of f's mapping is
 * then mapped in), else through the mapping, whose pages that lie wholly
 * inside t are released from this process once copied (the mapping stays
 * valid: reading t again re-reads the file), so loading a model does not
 * hold its weights twice. */
int al_st_read_f32(const al_st_file *f, const al_st_tensor *t, float *dst, size_t n,
                   char err[AL_ERRLEN]);
/* The same for a 2-D tensor (r, c) read into dst as (c, r) (GPT-2's Conv1D
 * weights into nn.Linear's layout). */
int al_st_read_f32_t(const al_st_file *f, const al_st_tensor *t, float *dst, size_t n,
                     char err[AL_ERRLEN]);
/* Into bf16 (uint16_t): BF16 copied, F32 and F16 rounded to nearest even;
 * transpose as al_st_read_f32_t. Both run the conversion on the compute
 * pool (loading at the speed of the page cache). */
int al_st_read_bf16(const al_st_file *f, const al_st_tensor *t, uint16_t *dst, size_t n,
                    int transpose, char err[AL_ERRLEN]);

/* Serving a tensor in place: its first byte in f's mapping, when f holds
 * a read lease (lease.h: another process that truncates or rewrites the
 * file makes us copy the mapping out first), the span
 * is valid and aligned to the element size (4 or 2 bytes; kernels load
 * weights unaligned, so nothing more is needed), with its pages mapped now
 * (MADV_POPULATE_READ, on the compute pool), so first use does not fault;
 * else NULL (the caller copies). The mapping is MAP_PRIVATE and writable:
 * a write copies the page, never reaches the file. The pointer is valid
 * while the mapping is: until al_st_close, or al_st_detach's caller unmaps. */
const void *al_st_serve(const al_st_file *f, const al_st_tensor *t);
/* The same pointer (or NULL) without mapping any page. */
const void *al_st_data(const al_st_file *f, const al_st_tensor *t);
/* Hands f's mapping (whole file, *size bytes) and its lease to the caller,
 * who unmaps it with al_st_unmap; f can no longer be read (al_st_read_* ->
 * AL_EINVAL), only closed. */
void *al_st_detach(al_st_file *f, size_t *size);
/* Unmaps what al_st_detach handed over and releases its lease (NULL: nothing). */
void al_st_unmap(void *map, size_t size);

/* A model folder's weights: model.safetensors, or every shard named by
 * model.safetensors.index.json (validated: weight_map entries must name
 * files inside the folder and the tensor must be in that shard). */
typedef struct al_st_dir {
    al_st_file *files;
    int n_files;
} al_st_dir;
/* `base` is the file stem: "model" (model.safetensors / .index.json) or
 * "adapter_model". AL_ENOENT when neither form exists. */
int al_st_dir_open(al_st_dir *d, const char *dir, const char *base, char err[AL_ERRLEN]);
void al_st_dir_close(al_st_dir *d);
/* Finds a tensor across shards; *file receives its shard. NULL if absent. */
const al_st_tensor *al_st_dir_find(const al_st_dir *d, const char *name,
                                   const al_st_file **file);

/* One tensor to write, from F32 data or (data NULL) bf16 data16, of the
 * given shape, stored as dtype (0 = F32; F16 and BF16 round to nearest
 * even, BF16 from data16 is copied). If transpose is set the 2-D data
 * (rows, cols) = (shape[1], shape[0]) is written transposed, so the file
 * holds shape (shape[0], shape[1]) — used for GPT-2's Conv1D layout. */
typedef struct al_st_entry {
    const char *name;
    const float *data;
    const uint16_t *data16;
    al_dtype dtype;
    int ndim;
    int64_t shape[AL_ST_MAXDIM];
    int transpose;
} al_st_entry;

/* Writes a safetensors file atomically; entries are sorted by name in
 * the header, the header padded with spaces to a multiple of 8 bytes, and
 * __metadata__ {"format": "pt"}. Duplicate names -> AL_EINVAL. */
int al_st_write(const char *path, const al_st_entry *e, int n, char err[AL_ERRLEN]);

/* Half-precision conversions (exact widening; round-to-nearest-even narrowing). */
float al_f16_to_f32(uint16_t h);
float al_bf16_to_f32(uint16_t h);
uint16_t al_f32_to_f16(float f);
uint16_t al_f32_to_bf16(float f);

#endif
