"""Train or fine-tune a minit2t model with torch.distributed, then bring it back to minit2t.

    torchrun --nproc_per_node=N examples/ddp_train.py --init t2t_vit_cifar --data PATH --steps S --out DIR

Every process holds the model as a torch module (minit2t.interop.TorchT2TViT, the release's parameter
names) wrapped in DistributedDataParallel (gloo on CPU, nccl with CUDA), reads its share of CIFAR-10
through minit2t's readers (a DistributedSampler), and steps AdamW on the recipe's schedule (linear
warm-up, cosine to --min-lr). Rank 0 keeps DIR/ckpt.pt (model, optimizer, step; written atomically,
continued with --resume) and at the end writes DIR/last.pth (a release-format state dict, as
`minit2t convert` writes) and DIR/last.npz (a shipped-model file: `python -m minit2t eval --checkpoint
DIR/last.npz` scores it). --batch-size is per process: the global batch is it times the processes.
A process group timeout (--timeout) makes the other ranks stop with one line when a rank dies or hangs.
"""
import argparse
import datetime
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

import minit2t as mt
from minit2t import hub, recipe
from minit2t.interop import TorchT2TViT, from_torch, to_torch
from minit2t.models.config import config_to_json
from minit2t.models.zoo import default_cfg

USED = ("model", "steps", "batch_size", "lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing",
        "clip_grad", "crop_padding", "pad_mode", "aug", "layer_scale", "drop_path", "drop_path_uniform", "seed",
        "train_subset")
IGNORED = tuple(o.name for o in recipe.RECIPE if o.name not in USED)   # epochs, mixup, ema, backend, reduce
DROPOUT_ONLY = ("drop_path_rate", "drop_path_uniform")                  # may change on an --init model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--init", metavar="PATH_OR_NAME", help="start from a shipped model (mt.list_pretrained()) "
                   "or any minit2t weights file (.npz; a plain state dict needs --model); else --model's init")
    p.add_argument("--data", required=True, help="CIFAR-10 (an archive or batches folder, or minit2t's sample)")
    p.add_argument("--out", required=True, metavar="DIR", help="ckpt.pt, last.pth, last.npz")
    p.add_argument("--resume", action="store_true", help="continue from DIR/ckpt.pt (--init is then unused)")
    p.add_argument("--save-every", type=int, default=100, metavar="S", help="rank 0 writes DIR/ckpt.pt every S steps")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a collective waits for the other ranks")
    p.add_argument("--dist-backend", choices=("gloo", "nccl"), help="default: nccl with CUDA, else gloo")
    p.add_argument("--scale-lr", type=int, metavar="REF", help="multiply --lr and --min-lr by the global batch "
                   "over REF (the release's rule: REF 512)")
    p.add_argument("--threads", type=int, help="torch threads a process (default: the CPUs over local processes)")
    p.add_argument("--check-sync", action="store_true", help="after every step, all-gather a checksum of the "
                   "weights, stop if the ranks differ, and append it to DIR/sync.rank<R>.jsonl")
    used = p.add_argument_group("the recipe's options (minit2t.recipe)")
    for option in recipe.RECIPE:
        if option.name in USED:
            option.add_flag(used)
    ignored = p.add_argument_group("recipe options this script ignores (minit2t train only)")
    for option in recipe.RECIPE:
        if option.name in IGNORED:
            option.add_flag(ignored, help=f"IGNORED here: {option.help}")
    args = p.parse_args(argv)
    for option in recipe.RECIPE:
        if getattr(args, option.name) is None and option.name in USED:
            setattr(args, option.name, option.default)
    if args.steps is None:
        p.error("--steps is required (the optimizer steps of this run)")
    return args


def init_process_group(args):
    """The process group from torchrun's environment (or a one-process group when run plainly)."""
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
        os.environ.setdefault(key, value)
    cuda = torch.cuda.is_available()
    backend = args.dist_backend or ("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if backend == "nccl" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.timeout))
    return dist.get_rank(), dist.get_world_size(), device


def initial_model(args):
    """(minit2t model, default_cfg): --init's weights, or --model freshly initialised with --seed."""
    kwargs = recipe.model_kwargs(vars(args))
    if args.init is None:
        mt.manual_seed(args.seed)
        model = mt.models.create_model(args.model, **kwargs)
        return model, model.default_cfg
    spec = args.init[len(hub.PRETRAINED):] if args.init.startswith(hub.PRETRAINED) else args.init
    path = hub.pretrained_path(spec) if spec in mt.list_pretrained() else spec
    model, _ = hub.load_model(path, args.model)
    if set(kwargs) - set(DROPOUT_ONLY):
        raise ValueError(f"--init {args.init} fixes the model: only --drop-path and --drop-path-uniform may "
                         f"change it, got {sorted(kwargs)}")
    cfg = getattr(model, "default_cfg", None) or default_cfg(args.model, model.config, cifar=True)
    if kwargs:
        rebuilt = mt.models.T2T_ViT(**{**model.config, **kwargs})
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    return model, cfg


def check_cifar(config):
    want = dict(img_size=32, in_chans=3, num_classes=10)
    if any(config[k] != v for k, v in want.items()):
        raise ValueError(f"ddp_train.py trains on CIFAR-10: the model must take {want}, "
                         f"got {({k: config[k] for k in want})}")


def atomic_torch_save(obj, path):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)                     # mkstemp's 0600 -> the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def learning_rate(step, args, warmup, lr, min_lr):
    """Linear warm-up over `warmup` steps, then cosine from lr to min_lr at args.steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, args.steps - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def batches(sampler, epoch, batch_size):
    """One epoch of this rank's index batches (the sampler's order for `epoch`; a short last batch dropped)."""
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def checksum(module):
    """Three float64 sums of every weight: equal on every rank while they are in sync."""
    flat = torch.cat([p.detach().double().flatten() for p in module.parameters()])
    ramp = torch.linspace(0, 1, flat.numel(), dtype=torch.float64, device=flat.device)
    return torch.stack([flat.sum(), (flat * flat).sum(), (flat * ramp).sum()])


def train(args, rank, world, device):
    out = args.out
    ckpt_path = os.path.join(out, "ckpt.pt")
    if args.resume:
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"--resume: no checkpoint {ckpt_path}")
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        config, cfg = json.loads(saved["config"]), json.loads(saved["default_cfg"])
        module = TorchT2TViT(config)
        module.load_state_dict(saved["model"])
    else:
        taken = [n for n in ("ckpt.pt", "last.pth", "last.npz") if os.path.exists(os.path.join(out, n))]
        if taken:
            raise FileExistsError(f"{out} already holds {', '.join(taken)}: --resume to continue it, or another --out")
        model, cfg = initial_model(args)
        module, saved = to_torch(model), None
    check_cifar(module.config)
    module = module.to(device).train()
    ddp = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    images, labels = mt.data.load_cifar10(args.data, split="train")
    if args.train_subset:
        images, labels = mt.data.subset(images, labels, args.train_subset, seed=args.seed)
    sampler = DistributedSampler(range(len(labels)), world, rank, shuffle=True, seed=args.seed, drop_last=True)
    per_epoch = len(sampler) // args.batch_size
    if per_epoch < 1:
        raise ValueError(f"{len(labels)} images over {world} processes give no batch of {args.batch_size}")
    scale = (args.batch_size * world / args.scale_lr) if args.scale_lr else 1.0
    lr, min_lr = args.lr * scale, args.min_lr * scale
    warmup = round(args.warmup_epochs * per_epoch)

    decay = [p for n, p in module.named_parameters() if p.requires_grad and p.ndim > 1 and n != "cls_token"]
    rest = [p for n, p in module.named_parameters() if p.requires_grad and (p.ndim <= 1 or n == "cls_token")]
    optimizer = torch.optim.AdamW([{"params": rest, "weight_decay": 0.0},
                                   {"params": decay, "weight_decay": args.weight_decay}], lr=lr)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    step = 0
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])

    def save_checkpoint():
        if rank == 0:
            atomic_torch_save({"model": module.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                               "config": json.dumps(config_to_json(module.config)),
                               "default_cfg": json.dumps(cfg)}, ckpt_path)

    epoch, plan = step // per_epoch, None
    while step < args.steps:
        if plan is None or step // per_epoch != epoch:
            epoch = step // per_epoch
            plan = batches(sampler, epoch, args.batch_size)
        idx = plan[step % per_epoch]
        rng = np.random.default_rng([args.seed, rank, step])
        x = mt.data.augment(images[idx], rng, args.crop_padding, args.pad_mode, args.aug == "3aug")
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(labels[idx]).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args, warmup, lr, min_lr)
        loss = criterion(ddp(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad:
            torch.nn.utils.clip_grad_norm_(module.parameters(), args.clip_grad)
        optimizer.step()
        step += 1
        if args.check_sync:
            check_sync(module, rank, world, step, out)
        if rank == 0 and (step % 10 == 0 or step == args.steps):
            print(f"step {step}/{args.steps} loss {loss.item():.4f} lr {optimizer.param_groups[0]['lr']:.3g}",
                  flush=True)
        if step % args.save_every == 0 or step == args.steps:
            save_checkpoint()
    return module.cpu(), cfg


class OutOfSync(Exception):
    pass


def check_sync(module, rank, world, step, out):
    mine = checksum(module)
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    with open(os.path.join(out, f"sync.rank{rank}.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, "checksum": mine.tolist()}) + "\n")
    if any(not torch.equal(mine, other) for other in everyone):
        raise OutOfSync(f"the ranks' weights differ after step {step}: {[c.tolist() for c in everyone]}")


def write_results(module, cfg, out):
    """DIR/last.pth (the release's state dict) and DIR/last.npz (a shipped-model file minit2t evaluates)."""
    atomic_torch_save(module.state_dict(), os.path.join(out, "last.pth"))
    model = from_torch(module.eval())
    model.default_cfg = cfg
    hub.export_pretrained(model, os.path.join(out, "last.npz"))


def main(argv=None):
    args = parse_args(argv)
    rank = None
    try:
        rank, world, device = init_process_group(args)
        given = [recipe.flag(n) for n in IGNORED if getattr(args, n) not in (None, False)]
        if given and rank == 0:
            print(f"ddp_train.py: ignoring {', '.join(given)} (options of minit2t train only)",
                  file=sys.stderr)
        if rank == 0:
            os.makedirs(args.out, exist_ok=True)
        dist.barrier()
        module, cfg = train(args, rank, world, device)
        if rank == 0:
            write_results(module, cfg, args.out)
            print(f"wrote {os.path.join(args.out, 'last.pth')} and {os.path.join(args.out, 'last.npz')}")
        dist.barrier()
        dist.destroy_process_group()
    except Exception as exc:                                # one line, not a traceback from inside torch
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        lost = isinstance(exc, RuntimeError) and dist.is_initialized() and dist.get_world_size() > 1
        why = f" (lost the other ranks: one died, or waited past --timeout {args.timeout:g}s)" if lost else ""
        print(f"ddp_train.py: rank {rank if rank is not None else '?'} stopped{why}: {type(exc).__name__}: {line}",
              file=sys.stderr, flush=True)
        os._exit(1)                                         # no exit handlers waiting on a broken group


if __name__ == "__main__":
    main()
