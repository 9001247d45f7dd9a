"""``slimgan export``: checkpoint -> bundle (ONNX, FP16, INT8, TensorRT) with parity and speed checks.

Registration imports nothing heavy; the work is :func:`export.bundle.export_bundle`.
Exit codes: 0 bundle written and every deployment parity row passed; 1 a parity row failed (the table
is printed); 2 a user error or a missing dependency (one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a generator checkpoint to an ONNX/FP16/INT8/TensorRT bundle with parity and speed checks",
        description="Writes BUNDLE/model.onnx, the OpenVINO IR model.xml/model.bin (+ model.fp16.onnx, model.int8.onnx, "
        "model.int8.xml, model.plan), manifest.json, "
        "parity.json and speed.json. Exits 1 when a parity check fails.",
    )
    p.add_argument("checkpoint", metavar="CKPT",
                   help="generator checkpoint directory (a distilled student, or a teacher to deploy on its own); "
                        "reports name it by the role its provenance records")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write")
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint: student-vs-teacher parity and speedup")
    p.add_argument("--teacher-bundle", metavar="DIR",
                   help="also export the --teacher checkpoint into its own bundle DIR (same options), to serve or "
                        "benchmark it")
    p.add_argument("--res", type=int, help="square input side for checks and speed (default 256)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--batch", metavar="MIN:OPT:MAX", help="batch range for the TensorRT profile and Triton (default 1:1:8)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, the minimum)")
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (IO and InstanceNorm in fp32)")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (static QDQ, needs --calib)")
    p.add_argument("--calib", metavar="DIR", help="folder of images to calibrate INT8 on")
    p.add_argument("--trt", action="store_true", help="also build model.plan with TensorRT (needs a CUDA GPU)")
    p.add_argument("--triton", metavar="DIR", help="also write a Triton model repository")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads (ONNX Runtime intra-op, OpenVINO inference) for checks and the speed comparison "
                        "(default 1; speed.json also reports all cores under by_threads)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip parity and speed measurements")
    p.add_argument("--speed-rounds", type=int, default=5, metavar="N",
                   help="interleaved teacher/student timing rounds of about 0.5 s each per model (default 5)")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="ship the ONNX graph as exported (skip the exact rewrites of export.optimize)")
    p.add_argument("--no-openvino", dest="openvino", action="store_false",
                   help="do not write the OpenVINO IR (model.xml/model.bin)")
    p.add_argument("--openvino-precision", choices=("auto", "f32", "bf16"), default="auto",
                   help="precision OpenVINO runs the IR at: auto = the CPU's default (bf16 on AVX512-BF16/AMX CPUs) "
                        "when it passes parity, else f32")
    p.add_argument("--targets", metavar="LIST",
                   help="comma list of artifacts: onnx (always), fp16, int8, openvino, tensorrt, tflite, coreml, ncnn, "
                        "executorch, ort-mobile (phone runtimes need their extras, e.g. pip install 'slimgan[mobile]'). "
                        "When given, only the listed artifacts are written (--fp16/--int8/--trt add to it)")
    p.add_argument("--json", action="store_true", help="print parity and speed as JSON instead of tables")
    p.set_defaults(func=run_export)


def _print_result(result, as_json: bool) -> None:
    from export.parity import format_table

    if as_json:
        print(json.dumps({"bundle": str(result.bundle), "role": result.manifest.role, "ok": result.ok,
                          "parity": result.parity, "speed": result.speed}, indent=2))
        return
    print(f"bundle: {result.bundle} ({result.manifest.role or 'model'}; {', '.join(result.manifest.files.values())})")
    if result.parity:
        print(format_table(result.parity))
    speed = result.speed
    for row in speed.get("rows", []):
        print(f"{row['name']:<48} median {row['median_ms']:9.2f} ms  p90 {row['p90_ms']:9.2f} ms  {row['throughput']:8.2f} img/s")
    if speed.get("speedup") is not None:
        for name, entry in speed.get("by_runtime", {}).items():
            if entry.get("speedup") is not None:
                print(f"  {name:<18} teacher {entry['teacher_median_ms']:9.2f} ms  student {entry['student_median_ms']:8.2f} ms"
                      f"  speedup {entry['speedup']:.2f}x")
        print(f"speedup (teacher median / student median) on {speed.get('runtime')}, the fastest runtime for the student: "
              f"{speed['speedup']:.2f}x at {speed['threads']} thread(s)   MAC ratio: {speed['mac_ratio']:.2f}x")
        for n, entry in speed.get("by_threads", {}).items():
            if int(n) != speed["threads"]:
                print(f"  at {n} threads: teacher {entry['teacher_median_ms']:.2f} ms, student "
                      f"{entry['student_median_ms']:.2f} ms, speedup {entry['speedup']:.2f}x")
    if speed.get("int8_speedup_vs_fp32") is not None:
        print(f"int8 vs fp32 (same measurement): {speed['int8_speedup_vs_fp32']:.2f}x")


def run_export(args: argparse.Namespace) -> int:
    from export.bundle import export_bundle
    from export.config import ExportConfig
    from export.pair import export_pair
    from slimgan.errors import ConfigError

    config = ExportConfig.create(
        teacher=args.teacher,
        res=args.res,
        height=args.height,
        width=args.width,
        batch=args.batch,
        opset=args.opset,
        fp16=args.fp16,
        int8=args.int8,
        calib=args.calib,
        trt=args.trt,
        triton=args.triton,
        threads=args.threads,
        check=args.check,
        speed_rounds=max(1, args.speed_rounds),
        optimize=args.optimize,
        openvino=args.openvino,
        openvino_precision=args.openvino_precision,
        targets=args.targets,
    )
    if args.teacher_bundle:
        if not args.teacher:
            raise ConfigError("--teacher-bundle needs --teacher CKPT (the checkpoint to export into it)")
        results = export_pair(args.checkpoint, args.out, args.teacher, args.teacher_bundle, config)
    else:
        results = (export_bundle(args.checkpoint, args.out, config),)
    for result in results:
        _print_result(result, args.json)
    failed = [r["name"] for result in results for r in result.failed]
    if failed:
        print(f"slimgan export: parity check failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
