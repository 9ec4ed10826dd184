"""Second-stage re-ranking: diversity (MMR) and explanations ("because ...")."""

from lmrec.rerank.explain import Because, explain, keywords_of, tag_idf
from lmrec.rerank.mmr import cosine_matrix, intra_list_similarity, mmr

__all__ = ["Because", "cosine_matrix", "explain", "intra_list_similarity", "keywords_of", "mmr", "tag_idf"]
