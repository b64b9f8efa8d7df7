//! Backend selection: `Auto` takes the best backend that runs and says why it
//! passed over the better ones; a forced backend that cannot run is an error (never
//! a panic, never a silent fallback).

use needle_kernels::cuda::CudaBackend;
use needle_kernels::wgsl::WgpuBackend;
use needle_kernels::{select_backend, BackendKind, KernelError, OnDeviceFull};

#[test]
fn auto_takes_the_first_backend_that_runs_and_records_the_others() {
    let selection = select_backend(BackendKind::Auto, OnDeviceFull::Refuse).unwrap();
    let cuda = CudaBackend::open();
    let wgpu = WgpuBackend::open();
    let expected = match (&cuda, &wgpu) {
        (Ok(_), _) => "cuda",
        (Err(_), Ok(_)) => "wgpu",
        (Err(_), Err(_)) => "cpu",
    };
    assert_eq!(selection.backend.name(), expected);
    let mut reasons = Vec::new();
    if let Err(e) = &cuda {
        reasons.push((BackendKind::Cuda, e.to_string()));
    }
    if expected == "cpu" {
        if let Err(e) = &wgpu {
            reasons.push((BackendKind::Wgpu, e.to_string()));
        }
    }
    assert_eq!(selection.passed_over, reasons);
}

#[test]
fn forcing_an_unavailable_backend_is_an_error() {
    match CudaBackend::open() {
        Ok(_) => eprintln!("CUDA is available here; nothing to check"),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    KernelError::BackendUnavailable {
                        backend: "cuda",
                        ..
                    }
                ),
                "{e}"
            );
            let forced = select_backend(BackendKind::Cuda, OnDeviceFull::Refuse);
            assert_eq!(forced.err(), Some(e));
        }
    }
    assert_eq!(
        select_backend(BackendKind::Cpu, OnDeviceFull::Refuse)
            .unwrap()
            .backend
            .name(),
        "cpu"
    );
}

#[test]
fn a_software_adapter_is_passed_over_by_auto_but_usable_when_forced() {
    let Ok(any) = WgpuBackend::open_any() else {
        eprintln!("no wgpu adapter at all here; nothing to check");
        return;
    };
    if any.device().is_software() {
        let refused = WgpuBackend::open().unwrap_err().to_string();
        assert!(refused.contains("software adapter"), "{refused}");
        let forced = select_backend(BackendKind::Wgpu, OnDeviceFull::Refuse).unwrap();
        assert_eq!(forced.backend.name(), "wgpu");
    }
}
