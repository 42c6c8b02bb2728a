"""Layers: Module bookkeeping, the basic layers and the ViT backbone's pieces."""
from minit2t.nn import functional, init
from minit2t.nn.layers import (GELU, Conv2d, Dropout, DropPath, Identity, LayerNorm, Linear, ModuleList,
                               Sequential, Softmax, Unfold)
from minit2t.nn.module import Module, Parameter
from minit2t.nn.shunted import DepthwiseConv2d, ShuntedAttention
from minit2t.nn.transformer import Attention, Block, LayerScale, Mlp

__all__ = ["Attention", "Block", "Conv2d", "DepthwiseConv2d", "Dropout", "DropPath", "GELU", "Identity", "LayerNorm",
           "LayerScale", "Linear", "Mlp", "Module", "ModuleList", "Parameter", "Sequential", "ShuntedAttention",
           "Softmax", "Unfold", "functional", "init"]
