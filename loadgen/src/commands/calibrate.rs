//! `loadgen calibrate`: one measurement of this machine's speed, as a line or JSON. Exit 0,
//! or 3 when the loopback workload cannot run.

use crate::calibration::{self, CalibrationMode};
use crate::commands::exit::Exit;

/// `loadgen calibrate`: one measurement, printed.
pub async fn main(mode: CalibrationMode, json: bool) -> Exit {
    let mode = match mode {
        CalibrationMode::Off => CalibrationMode::Quick,
        mode => mode,
    };
    match calibration::measure(mode).await {
        Ok(speed) if json => match serde_json::to_string_pretty(&speed) {
            Ok(text) => {
                println!("{text}");
                Exit::Passed
            }
            Err(error) => {
                eprintln!("loadgen: {error}");
                Exit::CouldNotRun
            }
        },
        Ok(speed) => {
            println!(
                "loopback send {} µs per 128-byte write, CPU workload {} ms ({})",
                calibration::us(speed.loopback_send_us),
                calibration::ms(speed.cpu_workload_ms),
                mode.as_str()
            );
            Exit::Passed
        }
        Err(error) => {
            eprintln!("loadgen: calibration: {error}");
            Exit::CouldNotRun
        }
    }
}
