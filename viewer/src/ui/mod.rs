//! Drawing only: every widget here reads the app's state and calls its methods; nothing
//! is charged from drawing code. Every input carries a label (screen readers and
//! egui_kittest find widgets by it).

mod reader_ui;
mod screens_ui;

use crate::app::{ReaderApp, Screen};

/// The look: light, readable, a little more air than egui's default.
pub fn style(ctx: &egui::Context) {
    ctx.set_visuals(egui::Visuals::light());
    ctx.global_style_mut(|s| {
        s.spacing.item_spacing = egui::vec2(8.0, 6.0);
        s.spacing.button_padding = egui::vec2(8.0, 4.0);
    });
}

/// Draws the current screen.
pub fn draw(app: &mut ReaderApp, ui: &mut egui::Ui) {
    match &app.screen {
        Screen::Reading(_) => reader_ui::draw(app, ui),
        Screen::Welcome => screens_ui::welcome(app, ui),
        Screen::Opening(_) => screens_ui::opening(ui),
        Screen::Problem(_) => screens_ui::problem(app, ui),
    }
}

pub use screens_ui::problem_text;
