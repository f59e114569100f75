//! Hot loops compiled for AVX2 when the CPU has it.
//!
//! Why: the build targets baseline x86-64 (SSE2), so the compiler vectorises elementwise loops
//! two f64 or four f32 wide. Run inside [`wide`], a loop whose body is inlined into it gets
//! twice that. Results cannot change: Rust never reorders a floating-point sum or contracts
//! `a * b + c` into an FMA, whatever the vector width.

/// Runs `f` compiled for AVX2 where the CPU has it, as it is otherwise. Whatever `f` should
/// gain must be inlined into it (closures called once are; mark helpers `inline(always)`).
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `f()` in a function compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
