/** The SVG chart of `migstream bench --svg`: compression ratio against compress throughput. */

export interface ChartPoint {
  readonly label: string;
  readonly ratio: number;
  /** Compress MB/s. */
  readonly speed: number;
  /** Ours or a command-line baseline (drawn differently). */
  readonly baseline: boolean;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** "Nice" round step for about `count` ticks over `span`. */
function step(span: number, count: number): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 5, 10].find((m) => m * power >= raw) ?? 10;
  return unit * power;
}

export function svgChart(title: string, points: readonly ChartPoint[]): string {
  const width = 760;
  const height = 480;
  const margin = { left: 70, right: 30, top: 50, bottom: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const maxSpeed = Math.max(1, ...points.map((p) => p.speed)) * 1.1;
  const minRatio = Math.min(1, ...points.map((p) => p.ratio));
  const maxRatio = Math.max(minRatio + 0.1, ...points.map((p) => p.ratio)) * 1.05;
  const x = (speed: number): number => margin.left + (speed / maxSpeed) * plotW;
  const y = (ratio: number): number => margin.top + plotH - ((ratio - minRatio) / (maxRatio - minRatio)) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${escape(title)}</text>`,
  ];
  const xStep = step(maxSpeed, 8);
  for (let v = 0; v <= maxSpeed; v += xStep) {
    out.push(`<line x1="${x(v)}" y1="${margin.top}" x2="${x(v)}" y2="${margin.top + plotH}" stroke="#eee"/>`);
    out.push(`<text x="${x(v)}" y="${margin.top + plotH + 18}" text-anchor="middle">${Math.round(v)}</text>`);
  }
  const yStep = step(maxRatio - minRatio, 6);
  for (let v = Math.ceil(minRatio / yStep) * yStep; v <= maxRatio; v += yStep) {
    out.push(`<line x1="${margin.left}" y1="${y(v)}" x2="${margin.left + plotW}" y2="${y(v)}" stroke="#eee"/>`);
    out.push(`<text x="${margin.left - 8}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`);
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 18}" text-anchor="middle">compress throughput (MB/s)</text>`);
  out.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">compression ratio</text>`);
  for (const point of points) {
    const [px, py] = [x(point.speed), y(point.ratio)];
    out.push(point.baseline ? `<rect x="${px - 5}" y="${py - 5}" width="10" height="10" fill="#d62728"/>` : `<circle cx="${px}" cy="${py}" r="5" fill="#1f77b4"/>`);
    out.push(`<text x="${px + 8}" y="${py - 6}">${escape(point.label)}</text>`);
  }
  out.push(
    `<circle cx="${margin.left + 12}" cy="${margin.top + 14}" r="5" fill="#1f77b4"/><text x="${margin.left + 22}" y="${margin.top + 18}">migstream</text>`,
    `<rect x="${margin.left + 7}" y="${margin.top + 27}" width="10" height="10" fill="#d62728"/><text x="${margin.left + 22}" y="${margin.top + 36}">command-line tool</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
