//! GPU gauges from NVML: memory, utilisation, temperature and power per GPU.
//!
//! NVML is loaded at start-up when the NVIDIA driver is present; without it these
//! gauges are simply not registered (a CPU-only node exports none of them), and a
//! query that fails later leaves that gauge unset instead of failing the scrape.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

pub(crate) struct GpuMetrics {
    nvml: Nvml,
    memory_used: IntGaugeVec,
    memory_total: IntGaugeVec,
    utilization: GaugeVec,
    temperature: GaugeVec,
    power: GaugeVec,
}

impl GpuMetrics {
    /// `None` when NVML cannot be loaded (no NVIDIA driver): nothing is registered.
    pub fn register(registry: &Registry) -> Result<Option<GpuMetrics>, prometheus::Error> {
        let nvml = match Nvml::init() {
            Ok(nvml) => nvml,
            Err(e) => {
                tracing::debug!(error = %e, "NVML not available; no GPU metrics");
                return Ok(None);
            }
        };
        let int_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["gpu"])?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let gauge = GaugeVec::new(Opts::new(name, help), &["gpu"])?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        Ok(Some(GpuMetrics {
            memory_used: int_gauge("needle_gpu_memory_used_bytes", "GPU memory in use")?,
            memory_total: int_gauge("needle_gpu_memory_total_bytes", "GPU memory installed")?,
            utilization: gauge(
                "needle_gpu_utilization_ratio",
                "Fraction of the last sample period a kernel ran on the GPU",
            )?,
            temperature: gauge("needle_gpu_temperature_celsius", "GPU die temperature")?,
            power: gauge("needle_gpu_power_watts", "GPU power draw")?,
            nvml,
        }))
    }

    /// Reads every GPU's current values into the gauges.
    pub fn refresh(&self) {
        let count = self.nvml.device_count().unwrap_or(0);
        for index in 0..count {
            let Ok(device) = self.nvml.device_by_index(index) else {
                continue;
            };
            let gpu = index.to_string();
            let label = [gpu.as_str()];
            if let Ok(memory) = device.memory_info() {
                self.memory_used
                    .with_label_values(&label)
                    .set(memory.used as i64);
                self.memory_total
                    .with_label_values(&label)
                    .set(memory.total as i64);
            }
            if let Ok(rates) = device.utilization_rates() {
                self.utilization
                    .with_label_values(&label)
                    .set(f64::from(rates.gpu) / 100.0);
            }
            if let Ok(celsius) = device.temperature(TemperatureSensor::Gpu) {
                self.temperature
                    .with_label_values(&label)
                    .set(f64::from(celsius));
            }
            if let Ok(milliwatts) = device.power_usage() {
                self.power
                    .with_label_values(&label)
                    .set(f64::from(milliwatts) / 1000.0);
            }
        }
    }
}
