//! The explorer as a real process in a tmux terminal: SIGTERM, SIGINT and SIGHUP leave the
//! terminal as it was (cooked mode, main screen, no mouse capture, cursor shown), and `q`
//! quits from the "too small" screen.

use ratatui::crossterm::event::KeyCode;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs the explorer on the tiny adapters in a `w × h` tmux session; the shell around it
    /// reports the exit status and the terminal mode afterwards.
    fn start(name: &str, w: u16, h: u16) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux is needed to drive the explorer in a terminal"
        );
        let dir = tempfile::tempdir().unwrap();
        let session = format!("lego-{name}-{}", std::process::id());
        let adapters: Vec<String> = crate::common::tiny_adapters()
            .iter()
            .map(|p| format!("'{}'", p.display()))
            .collect();
        let d = dir.path().display();
        let script = format!(
            "cd '{d}'; LORA_LEGO_DATA_DIR='{d}/data' bash -c 'echo $$ > pid; exec \"{bin}\" {args}'; \
             echo EXITED $?; stty -a | grep -Eo '(^| )-?icanon' | sed 's/^ //;s/^/MODE /'; sleep 600",
            bin = env!("CARGO_BIN_EXE_lora-lego"),
            args = adapters.join(" "),
        );
        // Two tests starting the first tmux server at once can see it refuse one of them
        // while it starts: try again shortly.
        let mut started = false;
        for _ in 0..5 {
            let st = Command::new("tmux")
                .args(["new-session", "-d", "-s", &session, "-x"])
                .arg(w.to_string())
                .arg("-y")
                .arg(h.to_string())
                .arg(&script)
                .status()
                .unwrap();
            if st.success() {
                started = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(started, "tmux new-session failed");
        Tmux { session, dir }
    }

    fn pane(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn flag(&self, name: &str) -> String {
        let o = Command::new("tmux")
            .args([
                "display",
                "-p",
                "-t",
                &self.session,
                &format!("#{{{name}}}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn wait_for(&self, needle: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if self.pane().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for `{needle}`:\n{}", self.pane());
    }

    fn pid(&self) -> i32 {
        let p = self.dir.path().join("pid");
        self.wait_file(&p);
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    }

    fn wait_file(&self, p: &Path) {
        let t = Instant::now();
        while !p.exists() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The terminal is back to normal after the explorer exited with `status`.
    fn assert_restored(&self, status: i32) {
        self.wait_for(&format!("EXITED {status}"));
        self.wait_for("MODE icanon");
        assert_eq!(
            self.flag("alternate_on"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.flag("mouse_any_flag"), "0", "mouse capture left on");
        assert_eq!(self.flag("cursor_flag"), "1", "cursor left hidden");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[test]
fn fatal_signals_restore_the_terminal() {
    for (signal, name) in [
        (libc::SIGTERM, "term"),
        (libc::SIGINT, "int"),
        (libc::SIGHUP, "hup"),
    ] {
        let t = Tmux::start(name, 160, 48);
        t.wait_for("Modules 14/14");
        assert_eq!(t.flag("alternate_on"), "1");
        assert_eq!(t.flag("mouse_any_flag"), "1");
        // SAFETY: signalling the explorer this test started.
        assert_eq!(unsafe { libc::kill(t.pid(), signal) }, 0);
        // The shell reports death by the signal: the default action was kept.
        t.assert_restored(128 + signal);
    }
}

#[test]
fn q_quits_from_the_too_small_screen() {
    let t = Tmux::start("small", 60, 20);
    t.wait_for("press q to quit");
    let st = Command::new("tmux")
        .args(["send-keys", "-t", &t.session, "q"])
        .status()
        .unwrap();
    assert!(st.success());
    t.assert_restored(0);
}

#[test]
fn q_quits_from_the_too_small_screen_in_a_scripted_session() {
    use lora_lego::tui::session::Session;
    let mut s = Session::open(&crate::common::tiny_adapters(), Default::default(), 60, 20).unwrap();
    assert!(
        s.app.unexported(),
        "the confirmation would otherwise be asked for"
    );
    s.key(KeyCode::Char('q'));
    assert!(s.app.quit);
}
