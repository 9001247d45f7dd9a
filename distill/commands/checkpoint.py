"""``slimgan import`` (reference .pth -> checkpoint) and ``slimgan info`` (params and MACs)."""

from __future__ import annotations

import argparse
import json


def _add_arch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ngf", type=int, help="generator width (reference default 64)")
    parser.add_argument("--ndf", type=int, help="discriminator width (reference default 64)")
    parser.add_argument("--width", type=float, help="multiplier on the family's default ngf / ndf")
    parser.add_argument("--norm", choices=["instance", "instance_affine", "batch", "none"],
                        help="instance_affine: InstanceNorm with a learned scale and shift")
    parser.add_argument("--input-nc", type=int, dest="input_nc")
    parser.add_argument("--output-nc", type=int, dest="output_nc")
    parser.add_argument("--n-layers", type=int, dest="n_layers", help="n_layers discriminator depth")
    parser.add_argument("--nz", type=int, help="latent size (unconditional generators)")
    parser.add_argument("--image-size", type=int, dest="image_size", help="output size (unconditional generators)")
    parser.add_argument("--config", help="GAN Compression configuration string (sub_mobile_resnet_9blocks), e.g. 16_16_32_16_32_32_16_16")


def _arch_kwargs(args: argparse.Namespace) -> dict:
    from distill.registry import model_info

    names = ("ngf", "ndf", "width", "norm", "input_nc", "output_nc", "n_layers", "nz", "image_size", "config")
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if args.arch is None:
        return given
    accepted = set(model_info(args.arch).defaults) | {"width"}
    # A generator ignores --ndf and a discriminator --ngf / --output-nc, as the reference's options do.
    return {k: v for k, v in given.items() if k in accepted}


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser(
        "import",
        help="convert a reference .pth (pix2pix/CycleGAN, GAN Compression, CAT, OMGD, pytorch/examples) into a checkpoint",
        description="Reads the .pth with torch.load(weights_only=True, map_location='cpu'): no arbitrary objects are "
        "unpickled, and weights saved on a GPU load on a CPU. The generator may sit inside a training checkpoint "
        "(state_dict, netG, g_ema, ...) and carry module. / _orig_mod. prefixes. Without --arch the architecture "
        "and its widths are inferred from the key names and shapes (or, for renamed modules, the layer order and "
        "shapes); with --arch they are checked against them.",
    )
    imp.add_argument("reference", metavar="REF.pth")
    imp.add_argument("--arch", help="registered architecture (default: inferred from the weights)")
    imp.add_argument("--key", help="which tensor dict of a file that holds several (e.g. netG_A, g_ema); "
                                   "default: the one a known generator fits")
    _add_arch_args(imp)
    imp.add_argument("--out", required=True, help="checkpoint directory to write")
    imp.add_argument("--role", choices=["teacher", "student"], default=None,
                     help="what the checkpoint is, recorded in its provenance (default: student for GAN Compression, "
                          "CAT and OMGD student families, teacher for other generators)")
    imp.set_defaults(func=run_import)

    info = subparsers.add_parser("info", help="architecture, parameter count and MACs of a checkpoint or arch")
    info.add_argument("checkpoint", nargs="?", metavar="DIR")
    info.add_argument("--arch", help="a registered architecture instead of a checkpoint")
    _add_arch_args(info)
    info.add_argument("--res", type=int, default=256, help="input side for MACs (default 256)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--layers", action="store_true",
                      help="also list every module path with its type and output shape at --res (the names "
                           "feature_kd / channel_distill / kernel_alignment take in `layers`)")
    info.set_defaults(func=run_info)

    schema = subparsers.add_parser(
        "schema", help="write configs/SCHEMA.md (every recipe key, type, default, meaning) from the config classes",
        description="Regenerates the recipe schema from distill/engine/config.py and the loss / method registries "
                    "(same as python -m distill.engine.schema).")
    schema.add_argument("--out", default=None, help="file to write (default: configs/SCHEMA.md of this checkout)")
    schema.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    schema.set_defaults(func=run_schema)


def run_import(args: argparse.Namespace) -> int:
    from distill.checkpoint import checkpoint_role, import_summary, read_checkpoint_config
    from distill.importers import import_reference

    out = import_reference(args.reference, args.arch, args.out, role=args.role, key=args.key, **_arch_kwargs(args))
    config = read_checkpoint_config(out)
    summary = config["provenance"].get("inferred_summary") or config["arch"]
    verb = "inferred" if args.arch is None else "checked"
    print(f"{verb}: {summary}")
    print(f"imported {args.reference} as {config['arch']} ({checkpoint_role(out)}) -> {out}")
    print(f"  {import_summary(out)}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from distill.checkpoint import load_checkpoint
    from distill.errors import ConfigError
    from distill.profile import describe
    from distill.registry import create_model

    if (args.checkpoint is None) == (args.arch is None):
        raise ConfigError("give either a checkpoint DIR or --arch NAME")
    model = load_checkpoint(args.checkpoint) if args.checkpoint else create_model(args.arch, **_arch_kwargs(args))
    report = describe(model, res=args.res)
    if args.checkpoint:
        from distill.checkpoint import checkpoint_role

        report["checkpoint"] = args.checkpoint
        report["role"] = checkpoint_role(args.checkpoint)
    if args.layers:
        from distill.profile import list_layers

        report["layers"] = list_layers(model, res=args.res)
    if args.json:
        print(json.dumps(report))
    else:
        kwargs = ", ".join(f"{k}={v}" for k, v in report["kwargs"].items())
        print(f"{report['arch']}({kwargs})")
        print(f"  params: {report['params']:,} ({report['mparams']:.2f} M)")
        print(f"  MACs at {args.res}x{args.res}: {report['macs']:,} ({report['gmacs']:.3f} G)")
        if report.get("role"):
            print(f"  role: {report['role']}")
        if args.layers:
            width = max(len(layer["path"]) for layer in report["layers"]) if report["layers"] else 4
            print(f"  {'module path':<{width}}  {'type':<20} {'output shape':<22} params")
            for layer in report["layers"]:
                shape = "x".join(map(str, layer["output_shape"])) if layer["output_shape"] else "-"
                print(f"  {layer['path']:<{width}}  {layer['type']:<20} {shape:<22} {layer['params']:,}")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from distill.engine.schema import SCHEMA_PATH, main

    return main(["--out", args.out or str(SCHEMA_PATH)] + (["--check"] if args.check else []))
