/* AL_SIMD_CLONES: the portable build's hot loops at the CPU's vector width.
 *
 * The installed binary is built for the x86-64 baseline (SSE2, 4 floats a
 * vector): the elementwise kernels that dominate small models' steps (GELU,
 * the norms, AdamW, the bias sums) ran at a quarter of what an AVX-512 core
 * does. GCC's target_clones compiles such a function also for AVX2 and
 * AVX-512F and picks the clone once, at load time (an ifunc), by the CPU it
 * runs on.
 *
 * Results do not depend on the clone. The build is C11 without extensions
 * (-std=c11: -ffp-contract=off, so no fused multiply-adds appear) and never
 * -ffast-math (no reassociation), so every clone computes each element with
 * the same IEEE operations in the same order; a loop that sums stays in its
 * written order in each. tests/test_ops.c checks the kernels against their
 * _ref twins whatever clone runs.
 *
 * Off where it would be redundant or unsupported: a -march=native build
 * (already at the CPU's width), the sanitizer builds (their instrumented
 * code is not what is measured, and ifunc resolvers run before the
 * sanitizer runtime is ready), compilers other than GCC, other CPUs. */
#ifndef AL_SIMD_H
#define AL_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(AL_NO_SIMD_CLONES)
#define AL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AL_SIMD_CLONES
#endif

#endif
