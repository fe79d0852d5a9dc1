import Foundation

extension CompareReport {
    /// The mode the chart divides by: route when it was measured (the physical limit), else
    /// vxlan, else the first mode.
    public var chartBaseline: LabMode {
        if setup.modes.contains(.route) { return .route }
        if setup.modes.contains(.vxlan) { return .vxlan }
        return setup.modes[0]
    }

    /// Grouped bars, one group per cell and one bar per mode, each the mode's figure divided by
    /// the baseline's (route), with the ratio written above it and the absolute figure in its
    /// tooltip; a dashed line marks 1.0. The title carries the date and the command.
    public var svg: String {
        let baseline = chartBaseline
        let modes = setup.modes
        let cells = setup.cells
        let barWidth = 34.0, barGap = 6.0, groupGap = 44.0
        let groupWidth = Double(modes.count) * (barWidth + barGap) - barGap
        let left = 70.0, right = 60.0, top = 96.0, plotHeight = 300.0
        let width = max(760, left + Double(cells.count) * (groupWidth + groupGap) + right)
        let height = top + plotHeight + 90

        var ratios: [CompareCell: [LabMode: Double]] = [:]
        for cell in cells {
            let values = Dictionary(rows.filter { $0.cell == cell }.map { ($0.mode, $0.value) }, uniquingKeysWith: { a, _ in a })
            guard let base = values[baseline], base > 0 else { continue }
            ratios[cell] = values.mapValues { $0 / base }
        }
        let largest = ratios.values.flatMap(\.values).max() ?? 1
        let step = largest <= 1.6 ? 0.25 : largest <= 4 ? 0.5 : (largest / 6).rounded(.up)
        let scaleTop = max(1.25, ((largest * 1.12) / step).rounded(.up) * step)
        func y(_ ratio: Double) -> Double { top + plotHeight * (1 - ratio / scaleTop) }

        var svg: [String] = []
        svg.append(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(fmt(width))" height="\##(fmt(height))" viewBox="0 0 \##(fmt(width)) \##(fmt(height))" font-family="sans-serif">"##)
        svg.append(##"<rect x="0" y="0" width="\##(fmt(width))" height="\##(fmt(height))" fill="white"/>"##)
        svg.append(##"<text class="title" x="\##(fmt(width / 2))" y="28" text-anchor="middle" font-size="18" font-weight="bold">\##(escape("weft lab compare: each mode ÷ \(baseline), \(dateText)"))</text>"##)
        svg.append(##"<text class="command" x="\##(fmt(width / 2))" y="50" text-anchor="middle" font-size="12" font-family="monospace">\##(escape(setup.command))</text>"##)
        let detail = "\(setup.nodes) nodes, \(formatSeconds(setup.durationSeconds)) s per cell, \(setup.rounds) round\(setup.rounds == 1 ? "" : "s"), Linux \(setup.kernel), \(setup.cpus) CPUs. Throughput: higher is better; latency: lower is better."
        svg.append(##"<text x="\##(fmt(width / 2))" y="70" text-anchor="middle" font-size="11" fill="#555">\##(escape(detail))</text>"##)

        // Axis, grid and the 1.0 line.
        var tick = 0.0
        while tick <= scaleTop + 1e-9 {
            svg.append(##"<line x1="\##(fmt(left))" y1="\##(fmt(y(tick)))" x2="\##(fmt(width - right))" y2="\##(fmt(y(tick)))" stroke="#e3e3e3"/>"##)
            svg.append(##"<text x="\##(fmt(left - 8))" y="\##(fmt(y(tick) + 4))" text-anchor="end" font-size="11">\##(String(format: "%.2f", tick))</text>"##)
            tick += step
        }
        svg.append(##"<line x1="\##(fmt(left))" y1="\##(fmt(y(1)))" x2="\##(fmt(width - right))" y2="\##(fmt(y(1)))" stroke="#333" stroke-dasharray="5,4"/>"##)
        svg.append(##"<line x1="\##(fmt(left))" y1="\##(fmt(top))" x2="\##(fmt(left))" y2="\##(fmt(top + plotHeight))" stroke="#333"/>"##)
        svg.append(##"<text x="18" y="\##(fmt(top + plotHeight / 2))" text-anchor="middle" font-size="12" transform="rotate(-90 18 \##(fmt(top + plotHeight / 2)))">ratio to \##(baseline)</text>"##)

        for (index, cell) in cells.enumerated() {
            let groupLeft = left + groupGap / 2 + Double(index) * (groupWidth + groupGap)
            for (slot, mode) in modes.enumerated() {
                guard let ratio = ratios[cell]?[mode], let row = rows.first(where: { $0.cell == cell && $0.mode == mode }) else { continue }
                let x = groupLeft + Double(slot) * (barWidth + barGap)
                let barTop = y(min(ratio, scaleTop))
                let tooltip = "\(cell) \(mode): \(Self.describe(row)), \(String(format: "%.2f", ratio)) x \(baseline)"
                svg.append(##"<rect class="bar" data-cell="\##(cell)" data-mode="\##(mode)" x="\##(fmt(x))" y="\##(fmt(barTop))" width="\##(fmt(barWidth))" height="\##(fmt(top + plotHeight - barTop))" fill="\##(color(mode))"><title>\##(escape(tooltip))</title></rect>"##)
                svg.append(##"<text x="\##(fmt(x + barWidth / 2))" y="\##(fmt(barTop - 4))" text-anchor="middle" font-size="11">\##(String(format: "%.2f", ratio))</text>"##)
            }
            let center = groupLeft + groupWidth / 2
            svg.append(##"<text x="\##(fmt(center))" y="\##(fmt(top + plotHeight + 20))" text-anchor="middle" font-size="12" font-weight="bold">\##(escape(cell.title))</text>"##)
            if let base = rows.first(where: { $0.cell == cell && $0.mode == baseline }) {
                svg.append(##"<text x="\##(fmt(center))" y="\##(fmt(top + plotHeight + 36))" text-anchor="middle" font-size="10" fill="#555">\##(escape("\(baseline): \(Self.headline(base))" + (cell.higherIsBetter ? "" : ", lower is better")))</text>"##)
            }
        }

        // Legend.
        var legendX = left
        let legendY = top + plotHeight + 56
        for mode in modes {
            let label = "\(mode)" + (setup.podMTU[mode].map { " (pod MTU \($0))" } ?? "")
            svg.append(##"<rect x="\##(fmt(legendX))" y="\##(fmt(legendY))" width="14" height="14" fill="\##(color(mode))"/>"##)
            svg.append(##"<text x="\##(fmt(legendX + 20))" y="\##(fmt(legendY + 12))" font-size="12">\##(escape(label))</text>"##)
            legendX += 40 + Double(label.count) * 7
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }
}

private func color(_ mode: LabMode) -> String {
    switch mode {
    case .weft: "#d95f02"
    case .vxlan: "#7570b3"
    case .route: "#1b9e77"
    case .wireguardGo: "#e7298a"
    case .nebula: "#66a61e"
    }
}

private func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

/// Text safe inside SVG elements and attributes.
func escape(_ text: String) -> String {
    var escaped = ""
    for character in text {
        switch character {
        case "&": escaped += "&amp;"
        case "<": escaped += "&lt;"
        case ">": escaped += "&gt;"
        case "\"": escaped += "&quot;"
        case "'": escaped += "&apos;"
        default: escaped.append(character)
        }
    }
    return escaped
}
