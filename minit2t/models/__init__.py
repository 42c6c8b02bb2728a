"""T2T-ViT: the T2T layers, the T2T module, the backbone and the model zoo."""
from minit2t.models.t2t import T2T_ViT, T2TModule, get_sinusoid_encoding
from minit2t.models.token_performer import TokenPerformer
from minit2t.models.token_transformer import TokenTransformer
from minit2t.models.zoo import VARIANTS, create_model, list_models

__all__ = ["T2T_ViT", "T2TModule", "TokenPerformer", "TokenTransformer", "VARIANTS", "create_model",
           "get_sinusoid_encoding", "list_models"]
